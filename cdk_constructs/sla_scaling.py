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
   traffic target tracking reacts to too slowly (a burst on a small fleet). With `wake: sla` (and min_tasks 0)
   the age only counts when the plan is failing: some task is desired, every desired task runs, and the backlog
   is more than the running tasks clear at the slowest instance type's rate before GUARD_DEADLINE_SHARE of the
   SLA (otherwise the metric reads 0). An old photo is then the intended result of waking late, not a sign of
   too few tasks.
3. `wake` (only when min_tasks == 0) step scaling on a metric that reads the visible messages while no task is
   desired, and is 0 otherwise, ExactCapacity sized for the backlog found: ceil(visible / target) rounded up to
   1, 2, 4, 8, ... max_tasks. Target tracking cannot start a fleet from zero (ceil(0 * x) = 0), so this is the
   only way out of zero.
   - `wake: immediate`: on the first visible message (visible >= 1).
   - `wake: sla` (the default): when the SLA's slack runs low, not on the first photo. The threshold is
     `wake_backlog` = slowest rate x WAKE_DRAIN_SHARE of the SLA (what one task drains in that budget), and
     once the oldest photo reaches `wake_age` the metric reads at least that much:

         wake_reaction = metric_delay + P + instance_launch + image_pull + task_start
         wake_age      = S - WAKE_MARGIN_SHARE * S - wake_reaction - WAKE_DRAIN_SHARE * S

     so the oldest photo is classified about WAKE_MARGIN_SHARE of the SLA before its deadline, and the photos
     gathered behind it within the drain budget after it. The margin absorbs slower hosts, launches, pulls and
     metrics than the YAML says (the simulator's sensitivity runs check 2x launch, 2x pull, 300 s metric delay
     and 0.6x throughput).
4. `shrink` step scaling on IF(tasks > 1, backlog / tasks, target) <= SHRINK_BELOW * target for
   SHRINK_MINUTES datapoints: PercentChangeInCapacity -SHRINK_PERCENT (at least one task). Never below one
   task; tasks holding messages are protected by ECS task scale-in protection, so a busy task finishes its
   batch before it stops.
5. `idle` (only when min_tasks == 0) step scaling, ExactCapacity min_tasks, the only policy that reaches zero:
   - `immediate`: visible + not visible <= 0 for scale_in_idle_minutes datapoints;
   - `sla`, for IDLE_AFTER_DRAIN_MINUTES datapoints: an empty queue, or at most batch_size messages while one
     task runs, is the only one desired, keeps the oldest photo under IDLE_MAX_AGE_SECONDS and the queue
     receives (NumberOfMessagesSent) under wake_backlog per IDLE_MIN_GATHER_MINUTES: a task that has drained
     what it was woken for keeps up with a trickle at a fraction of its speed, so the fleet goes back to zero and
     gathers again (duty cycling).

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
# 0.4 rather than 0.35: the bigger per-task backlog lets a short burst queue instead of waking hosts it does not need
# (burst 1.48 to 1.21 times the oracle); the simulator's sensitivity cases still keep every photo within the SLA.
TARGET_SHARE = 0.4
# (fraction of the SLA reached by the oldest photo, fraction of max_tasks added); the last step adds max_tasks.
GUARD_STEPS: tuple[tuple[float, float], ...] = ((0.25, 0.1), (0.5, 0.25), (0.75, 1.0))
GUARD_DATAPOINTS = 2
# `wake: sla`: the guard counts an old photo only if the running tasks cannot clear the backlog before this share
# of the SLA; below the SLA less the wake margin, so a wake that goes to plan never trips it, and short of the
# SLA itself, so a failing plan still gets tasks in time.
GUARD_DEADLINE_SHARE = 0.925
# `wake: sla`: the oldest photo is to be classified this share of the SLA before its deadline, and the photos
# behind it within this share of the SLA after it.
WAKE_MARGIN_SHARE = 0.15
WAKE_DRAIN_SHARE = 0.1
# `wake: sla`: minutes of an empty queue before the fleet goes back to zero.
IDLE_AFTER_DRAIN_MINUTES = 2
# `wake: sla`: a task keeping the oldest photo younger than this keeps up with the traffic.
IDLE_MAX_AGE_SECONDS = 120
# `wake: sla`: a trickle is slow enough to gather again if the wake backlog takes this long to arrive.
IDLE_MIN_GATHER_MINUTES = 20
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
SENT = MetricQuery("sent", "AWS/SQS", "NumberOfMessagesSent", "Sum", "queue")
DESIRED = MetricQuery("tasks", "ECS/ContainerInsights", "DesiredTaskCount", "Average", "service")
RUNNING = MetricQuery("tasks", "ECS/ContainerInsights", "RunningTaskCount", "Average", "service")
# The running count beside the desired one (`tasks`) in the same expression.
RUNNING_BESIDE_DESIRED = MetricQuery("running", "ECS/ContainerInsights", "RunningTaskCount", "Average", "service")


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


def slowest_images_per_second(worker: WorkerConfig) -> float:
    """The lowest per-task rate of the instance types the hosts may be (deadlines are planned on it)."""
    rates = worker.scaling.images_per_second_by_instance_type
    return min(rates.get(t, worker.scaling.images_per_second_per_task) for t in worker.capacity.instance_types)


def wake_reaction_seconds(worker: WorkerConfig) -> int:
    """Seconds from a datapoint that trips the wake alarm to a task classifying (a fresh host)."""
    sim = worker.simulation
    return (
        sim.metric_delay_seconds
        + sim.metric_period_seconds
        + sim.instance_launch_seconds
        + sim.image_pull_seconds
        + sim.task_start_seconds
    )


def wake_age_seconds(worker: WorkerConfig) -> int:
    """`wake: sla`: the age of the oldest photo at which the fleet leaves zero (see the module docstring)."""
    sla = worker.sla_minutes * 60
    budget = round(sla * (1 - WAKE_MARGIN_SHARE - WAKE_DRAIN_SHARE)) - wake_reaction_seconds(worker)
    return max(budget, 0)


def wake_backlog(worker: WorkerConfig) -> float:
    """`wake: sla`: visible messages at which the fleet leaves zero whatever their age: what one task of the
    slowest instance type drains in WAKE_DRAIN_SHARE of the SLA."""
    sla = worker.sla_minutes * 60
    return float(max(round(slowest_images_per_second(worker) * WAKE_DRAIN_SHARE * sla), 1))


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


def wake_steps(target: float, max_tasks: int, first: float = 1.0) -> tuple[Step, ...]:
    """ExactCapacity levels 1, 2, 4, ... max_tasks from `first` visible messages on; level c covers a backlog up to
    c * target messages (the first level at least up to `first`)."""
    levels: list[int] = []
    level = 1
    while level < max_tasks:
        levels.append(level)
        level *= 2
    levels.append(max_tasks)
    steps = []
    lower = first
    for i, capacity in enumerate(levels):
        upper = capacity * target if i + 1 < len(levels) else None
        if upper is not None and upper <= lower:
            continue  # a level wholly below `first`
        steps.append(Step(lower=lower, upper=upper, adjustment=capacity))
        if upper is not None:
            lower = upper
    return tuple(steps)


def immediate_wake_metric(period: int) -> MetricSpec:
    """`wake: immediate`: the visible messages while no task is desired."""
    return MetricSpec(
        expression="IF(FILL(tasks, 0) < 1, visible, 0)",
        queries=(VISIBLE, DESIRED),
        period_seconds=period,
        label="visible messages while no task runs",
    )


def sla_wake_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: while no task is desired, the visible messages, raised to `wake_backlog` once the oldest photo
    is `wake_age` old; 0 otherwise. The alarm fires at `wake_backlog`, so either condition wakes the fleet and the
    steps size it by the backlog."""
    backlog, age = f"{wake_backlog(worker):g}", f"{wake_age_seconds(worker):g}"
    return MetricSpec(
        expression=(
            f"IF(FILL(tasks, 0) < 1, IF(age >= {age}, IF(visible > {backlog}, visible, {backlog}), visible), 0)"
        ),
        queries=(VISIBLE, AGE, DESIRED),
        period_seconds=worker.simulation.metric_period_seconds,
        label=f"visible messages while no task runs (at least {backlog} once the oldest is {age} s old)",
    )


def plan_failing_age_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: the age of the oldest message while the fleet in place cannot keep the SLA, else 0.

    0 with no task desired (the wake policy owns that) or while a desired task has not started (the plan is being
    carried out); otherwise the age if the backlog exceeds what the running tasks clear, at the slowest instance
    type's rate, before GUARD_DEADLINE_SHARE of the SLA.
    """
    rate = slowest_images_per_second(worker)
    deadline = round(GUARD_DEADLINE_SHARE * worker.sla_minutes * 60)
    return MetricSpec(
        expression=(
            "IF(FILL(tasks, 0) < 1, 0, IF(FILL(running, 0) < tasks, 0, "
            f"IF(visible + inflight > {rate:g} * running * ({deadline} - age), age, 0)))"
        ),
        queries=(VISIBLE, INFLIGHT, AGE, DESIRED, RUNNING_BESIDE_DESIRED),
        period_seconds=worker.simulation.metric_period_seconds,
        label="age of oldest message while the running tasks cannot clear the backlog in time",
    )


def queue_metric(period: int) -> MetricSpec:
    return MetricSpec(
        expression="visible + inflight",
        queries=(VISIBLE, INFLIGHT),
        period_seconds=period,
        label="messages in the queue",
    )


def sla_idle_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: 0 for an empty queue (whatever the fleet), and the messages in the queue while one task runs,
    is the only one desired and keeps the oldest photo younger than IDLE_MAX_AGE_SECONDS (it has drained what it
    was woken for); otherwise one batch more than the idle threshold."""
    busy = worker.batch_size + 1
    period = worker.simulation.metric_period_seconds
    # Gathering again pays off only if the next wake is far: the capacity provider keeps an empty host 15 minutes
    # and a new one takes 6 to start, about what a task left running costs in IDLE_MIN_GATHER_MINUTES.
    trickle = round(wake_backlog(worker) * period / (IDLE_MIN_GATHER_MINUTES * 60))
    return MetricSpec(
        expression=(
            f"IF(visible + inflight < 1, 0, IF(FILL(tasks, 0) > 1, {busy}, IF(FILL(running, 0) < 1, {busy}, "
            f"IF(age > {IDLE_MAX_AGE_SECONDS}, {busy}, IF(FILL(sent, 0) > {trickle}, {busy}, visible + inflight)))))"
        ),
        queries=(VISIBLE, INFLIGHT, AGE, SENT, DESIRED, RUNNING_BESIDE_DESIRED),
        period_seconds=worker.simulation.metric_period_seconds,
        label="messages in the queue while one task keeps up",
    )


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
    # Only a fleet that can reach zero wakes; with a minimum fleet the guard stays the bare age.
    sla_wake = scaling.wake == "sla" and scaling.min_tasks == 0
    guard = StepPolicy(
        name="age-guard",
        metric=plan_failing_age_metric(worker) if sla_wake else age_metric(period),
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
        first = wake_backlog(worker) if sla_wake else 1.0
        steps.append(
            StepPolicy(
                name="wake",
                metric=sla_wake_metric(worker) if sla_wake else immediate_wake_metric(period),
                comparison="GreaterThanOrEqualToThreshold",
                threshold=first,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                adjustment_type="ExactCapacity",
                steps=wake_steps(target, scaling.max_tasks, first),
                cooldown_seconds=provision,
            )
        )
        idle_minutes = IDLE_AFTER_DRAIN_MINUTES if sla_wake else scaling.scale_in_idle_minutes
        idle_periods = max(1, idle_minutes * 60 // period)
        # `sla`: one task holding at most a batch has drained what was gathered and keeps up with a trickle;
        # back to zero, to gather again. `immediate`: only an empty queue.
        idle_below = float(worker.batch_size) if sla_wake else 0.0
        steps.append(
            StepPolicy(
                name="idle",
                metric=sla_idle_metric(worker) if sla_wake else queue_metric(period),
                comparison="LessThanOrEqualToThreshold",
                threshold=idle_below,
                evaluation_periods=idle_periods,
                datapoints_to_alarm=idle_periods,
                adjustment_type="ExactCapacity",
                steps=(Step(lower=None, upper=idle_below, adjustment=scaling.min_tasks),),
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
