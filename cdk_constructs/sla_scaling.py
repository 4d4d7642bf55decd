"""The SLA-driven scaling policy of a GPU queue worker, as plain numbers the CDK construct turns into resources.

`derive_policy(worker)` reads one worker definition (`config/workers/<name>.yaml`) and returns a frozen
`ScalingPolicy`: everything Application Auto Scaling and CloudWatch need, and nothing else. The construct deploys it
and `python -m tools.scaling_sim` replays traffic against the very same object, so the policy simulated is the
policy deployed. This module imports no CDK so both can use it.

Formula (all times in seconds, S = sla_minutes * 60, mu = images_per_second_per_task, P = metric period = 60):

    reaction    = metric_delay + 3 * P + instance_launch + image_pull + task_start
                  (SQS metrics arrive late, target tracking's high alarm needs 3 datapoints, then a host boots,
                  pulls the image and starts the task: the time from "too few tasks" to "a new task works")
    acceptable  = max(TARGET_SHARE * S - reaction, P)
    target      = max(mu * acceptable, batch_size)            messages of backlog per task

Policies (one scalable target: the ECS service's DesiredCount, min = min_tasks, max = max_tasks):

1. `backlog` target tracking on (visible + not visible) / desired tasks, 1-minute metric math. With the fleet
   just short of the arrival rate the backlog settles at `target` per task, so a photo waits about `acceptable`
   seconds and every task is busy: the cheapest fleet that keeps the SLA. The denominator is the *desired*
   task count (Container Insights), not the running count: tasks take `reaction` seconds to start, and dividing
   by the running count would keep asking for more while the first ones boot. Its own scale-in is disabled:
   target tracking computes ceil(desired * metric / target), which drops to zero whenever the queue is empty
   for 15 minutes; scale-in is the job of policies 4 and 5.
2. `age-guard` step scaling on ApproximateAgeOfOldestMessage (Maximum, 1 minute, 2 of 2 datapoints): when the
   oldest photo reaches GUARD_STEPS fractions of the SLA, add the matching share of max_tasks
   (ChangeInCapacity; the last step adds max_tasks, i.e. goes to the maximum). This is the safety net for
   traffic target tracking reacts to too slowly (a burst on a small fleet).
3. `wake` (only when min_tasks == 0) step scaling on IF(tasks < 1, visible, 0) >= 1 for one datapoint:
   ExactCapacity sized for the backlog found, ceil(visible / target) rounded up to 1, 2, 4, 8, ... max_tasks.
   Target tracking cannot start a fleet from zero (ceil(0 * x) = 0), so this is the only way out of zero.
4. `shrink` step scaling on IF(tasks > 1, backlog / tasks, target) <= SHRINK_BELOW * target for
   SHRINK_MINUTES datapoints: PercentChangeInCapacity -SHRINK_PERCENT (at least one task). Never below one
   task; tasks holding messages are protected by ECS task scale-in protection, so a busy task finishes its
   batch before it stops.
5. `idle` (only when min_tasks == 0) step scaling on visible + not visible <= 0 for scale_in_idle_minutes
   datapoints: ExactCapacity min_tasks. The only policy that reaches zero.

Step bounds are absolute metric values (seconds or messages) as `ScalingInterval` takes them (see `Step`).
Target tracking's own alarms are fixed by AWS (3 datapoints above the target to scale out, 15 below 90% of it
to scale in); `TargetTracking` records them for the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from stacks.config import WorkerConfig

AdjustmentType = Literal["ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"]
Comparison = Literal["GreaterThanOrEqualToThreshold", "LessThanOrEqualToThreshold"]
Resource = Literal["queue", "service"]

# Share of the SLA a photo may spend queued when the fleet is sized right; the rest of the SLA absorbs reaction
# time and traffic the target tracking policy has not caught up with yet (the age guard covers that part).
TARGET_SHARE = 0.35
# (fraction of the SLA reached by the oldest photo, fraction of max_tasks added); the last step adds max_tasks.
GUARD_STEPS: tuple[tuple[float, float], ...] = ((0.25, 0.1), (0.5, 0.25), (0.75, 1.0))
GUARD_DATAPOINTS = 2
# Shrink by this share of the fleet once backlog per task stays below SHRINK_BELOW * target this long.
SHRINK_BELOW = 0.5
SHRINK_MINUTES = 15
SHRINK_PERCENT = 20
# Application Auto Scaling's own alarms for target tracking policies (not configurable).
TT_HIGH_DATAPOINTS = 3
TT_LOW_DATAPOINTS = 15
TT_LOW_RATIO = 0.9


@dataclass(frozen=True)
class MetricQuery:
    """One CloudWatch metric inside a metric math expression; `resource` says whose dimensions it takes
    (`queue`: QueueName of the work queue; `service`: ClusterName + ServiceName of the ECS service)."""

    id: str
    namespace: str
    metric_name: str
    statistic: str
    resource: Resource


@dataclass(frozen=True)
class MetricSpec:
    """A CloudWatch metric math expression over `queries`, evaluated per `period_seconds`."""

    expression: str
    queries: tuple[MetricQuery, ...]
    period_seconds: int
    label: str


@dataclass(frozen=True)
class Step:
    """One step of a step scaling policy: metric value between `lower` and `upper` -> `adjustment`.

    As Application Auto Scaling applies bounds: above the alarm threshold `lower` is inclusive and `upper`
    exclusive; below it (LessThanOrEqual alarms) `lower` is exclusive and `upper` inclusive. None is unbounded.
    """

    lower: float | None
    upper: float | None
    adjustment: int

    def contains(self, value: float, *, below_threshold: bool = False) -> bool:
        if below_threshold:
            return (self.lower is None or value > self.lower) and (self.upper is None or value <= self.upper)
        return (self.lower is None or value >= self.lower) and (self.upper is None or value < self.upper)


@dataclass(frozen=True)
class StepPolicy:
    """A CloudWatch alarm on `metric` plus an Application Auto Scaling step scaling policy it invokes."""

    name: str
    metric: MetricSpec
    comparison: Comparison
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    adjustment_type: AdjustmentType
    steps: tuple[Step, ...]
    cooldown_seconds: int
    min_adjustment_magnitude: int | None = None


@dataclass(frozen=True)
class TargetTracking:
    """An Application Auto Scaling target tracking policy on a customized metric (metric math)."""

    name: str
    metric: MetricSpec
    target_value: float
    scale_out_cooldown_seconds: int
    scale_in_cooldown_seconds: int
    disable_scale_in: bool
    high_alarm_datapoints: int = TT_HIGH_DATAPOINTS
    low_alarm_datapoints: int = TT_LOW_DATAPOINTS
    low_alarm_ratio: float = TT_LOW_RATIO


@dataclass(frozen=True)
class ScalingPolicy:
    """Everything the construct deploys for one worker's ECS service."""

    min_capacity: int
    max_capacity: int
    metric_period_seconds: int
    reaction_seconds: int
    acceptable_latency_seconds: int
    target_tracking: tuple[TargetTracking, ...]
    step_policies: tuple[StepPolicy, ...]


VISIBLE = MetricQuery("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", "queue")
INFLIGHT = MetricQuery("inflight", "AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "Maximum", "queue")
AGE = MetricQuery("age", "AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "queue")
DESIRED = MetricQuery("tasks", "ECS/ContainerInsights", "DesiredTaskCount", "Average", "service")
RUNNING = MetricQuery("tasks", "ECS/ContainerInsights", "RunningTaskCount", "Average", "service")


def reaction_seconds(worker: WorkerConfig) -> int:
    """Seconds from "the fleet is too small" to "a new task is processing photos" (see the module docstring)."""
    sim = worker.simulation
    return (
        sim.metric_delay_seconds
        + TT_HIGH_DATAPOINTS * sim.metric_period_seconds
        + sim.instance_launch_seconds
        + sim.image_pull_seconds
        + sim.task_start_seconds
    )


def acceptable_latency_seconds(worker: WorkerConfig) -> int:
    """How long a photo may wait in a right-sized fleet: TARGET_SHARE of the SLA less the reaction time."""
    share = int(TARGET_SHARE * worker.sla_minutes * 60)
    return max(share - reaction_seconds(worker), worker.simulation.metric_period_seconds)


def backlog_target(worker: WorkerConfig) -> float:
    """Backlog per task (messages) the target tracking policy holds: what one task clears in `acceptable` seconds."""
    messages = round(worker.scaling.images_per_second_per_task * acceptable_latency_seconds(worker))
    return float(max(messages, worker.batch_size))


def backlog_per_task_metric(period: int, tasks: MetricQuery = DESIRED) -> MetricSpec:
    """(visible + not visible) / tasks, counting an empty fleet as one task so the value stays defined."""
    return MetricSpec(
        expression="(visible + inflight) / IF(FILL(tasks, 0) < 1, 1, tasks)",
        queries=(VISIBLE, INFLIGHT, tasks),
        period_seconds=period,
        label="backlog per task",
    )


def age_metric(period: int) -> MetricSpec:
    return MetricSpec(expression="age", queries=(AGE,), period_seconds=period, label="age of oldest message")


def age_guard_steps(sla_seconds: int, max_tasks: int) -> tuple[Step, ...]:
    """GUARD_STEPS as absolute age bounds; each adds ceil(share * max_tasks) tasks, at least one."""
    bounds = [round(fraction * sla_seconds) for fraction, _ in GUARD_STEPS]
    return tuple(
        Step(
            lower=float(lower),
            upper=float(bounds[i + 1]) if i + 1 < len(bounds) else None,
            adjustment=max(1, math.ceil(share * max_tasks)),
        )
        for i, (lower, (_, share)) in enumerate(zip(bounds, GUARD_STEPS, strict=True))
    )


def wake_steps(target: float, max_tasks: int) -> tuple[Step, ...]:
    """ExactCapacity levels 1, 2, 4, ... max_tasks; level c covers a backlog up to c * target messages."""
    levels: list[int] = []
    level = 1
    while level < max_tasks:
        levels.append(level)
        level *= 2
    levels.append(max_tasks)
    steps = []
    lower = 1.0
    for i, capacity in enumerate(levels):
        upper = capacity * target if i + 1 < len(levels) else None
        steps.append(Step(lower=lower, upper=upper, adjustment=capacity))
        if upper is not None:
            lower = upper
    return tuple(steps)


def derive_policy(worker: WorkerConfig) -> ScalingPolicy:
    """The scaling policy the construct deploys for `worker` (see the module docstring for the formula)."""
    scaling, sim = worker.scaling, worker.simulation
    period = sim.metric_period_seconds
    sla = worker.sla_minutes * 60
    target = backlog_target(worker)
    provision = sim.instance_launch_seconds + sim.image_pull_seconds + sim.task_start_seconds
    backlog = backlog_per_task_metric(period)

    tracking = TargetTracking(
        name="backlog",
        metric=backlog,
        target_value=target,
        # New tasks only show in the metric once they run; asking again sooner would double-count the backlog.
        scale_out_cooldown_seconds=provision,
        scale_in_cooldown_seconds=scaling.scale_in_idle_minutes * 60,
        disable_scale_in=True,
    )
    guard = StepPolicy(
        name="age-guard",
        metric=age_metric(period),
        comparison="GreaterThanOrEqualToThreshold",
        threshold=float(round(GUARD_STEPS[0][0] * sla)),
        evaluation_periods=GUARD_DATAPOINTS,
        datapoints_to_alarm=GUARD_DATAPOINTS,
        adjustment_type="ChangeInCapacity",
        steps=age_guard_steps(sla, scaling.max_tasks),
        cooldown_seconds=provision,
    )
    shrink = StepPolicy(
        name="shrink",
        metric=MetricSpec(
            expression=f"IF(FILL(tasks, 0) > 1, (visible + inflight) / tasks, {target:g})",
            queries=(VISIBLE, INFLIGHT, DESIRED),
            period_seconds=period,
            label="backlog per task (one task or fewer: the target)",
        ),
        comparison="LessThanOrEqualToThreshold",
        threshold=SHRINK_BELOW * target,
        evaluation_periods=SHRINK_MINUTES * 60 // period,
        datapoints_to_alarm=SHRINK_MINUTES * 60 // period,
        adjustment_type="PercentChangeInCapacity",
        steps=(Step(lower=None, upper=SHRINK_BELOW * target, adjustment=-SHRINK_PERCENT),),
        cooldown_seconds=scaling.scale_in_idle_minutes * 60,
        min_adjustment_magnitude=1,
    )
    steps: list[StepPolicy] = [guard, shrink]
    if scaling.min_tasks == 0:
        steps.append(
            StepPolicy(
                name="wake",
                metric=MetricSpec(
                    expression="IF(FILL(tasks, 0) < 1, visible, 0)",
                    queries=(VISIBLE, DESIRED),
                    period_seconds=period,
                    label="visible messages while no task runs",
                ),
                comparison="GreaterThanOrEqualToThreshold",
                threshold=1.0,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                adjustment_type="ExactCapacity",
                steps=wake_steps(target, scaling.max_tasks),
                cooldown_seconds=provision,
            )
        )
        idle_periods = max(1, scaling.scale_in_idle_minutes * 60 // period)
        steps.append(
            StepPolicy(
                name="idle",
                metric=MetricSpec(
                    expression="visible + inflight",
                    queries=(VISIBLE, INFLIGHT),
                    period_seconds=period,
                    label="messages in the queue",
                ),
                comparison="LessThanOrEqualToThreshold",
                threshold=0.0,
                evaluation_periods=idle_periods,
                datapoints_to_alarm=idle_periods,
                adjustment_type="ExactCapacity",
                steps=(Step(lower=None, upper=0.0, adjustment=scaling.min_tasks),),
                cooldown_seconds=period,
            )
        )
    return ScalingPolicy(
        min_capacity=scaling.min_tasks,
        max_capacity=scaling.max_tasks,
        metric_period_seconds=period,
        reaction_seconds=reaction_seconds(worker),
        acceptable_latency_seconds=acceptable_latency_seconds(worker),
        target_tracking=(tracking,),
        step_policies=tuple(steps),
    )
