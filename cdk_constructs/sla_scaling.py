"""The SLA-driven scaling policy of a GPU queue worker, as plain numbers the CDK construct turns into resources.

`derive_policy(worker)` reads one worker definition (`config/workers/<name>.yaml`) and returns a frozen
`ScalingPolicy`: everything Application Auto Scaling, EC2 Auto Scaling and CloudWatch need, and nothing else. The
construct deploys it and `python -m tools.scaling_sim` replays traffic against the very same object, so the policy
simulated is the policy deployed. This module imports no CDK so both can use it.

Formula (all times in seconds, S = sla_minutes * 60, mu = images_per_second_per_task, P = metric period = 60):

    reaction    = metric_delay + 3 * P + instance_launch + image_pull + task_start
                  (SQS metrics arrive late, target tracking's high alarm needs 3 datapoints, then a host boots,
                  pulls the image and starts the task: the time from "too few tasks" to "a new task works")
    acceptable  = max(share * S - reaction, P)      share = SLA_WAKE_TARGET_SHARE (wake: sla), else TARGET_SHARE
    target      = max(mu * acceptable, batch_size)            messages of backlog per task

Policies (one scalable target: the ECS service's DesiredCount, min = min_tasks, max = max_tasks):

1. `backlog` target tracking on (visible + not visible) / desired tasks, 1-minute metric math. With the fleet
   just short of the arrival rate the backlog settles at `target` per task, so a photo waits about `acceptable`
   seconds and every task is busy: the cheapest fleet that keeps the SLA. The denominator is the *desired*
   task count (Container Insights), not the running count: tasks take `reaction` seconds to start, and dividing
   by the running count would keep asking for more while the first ones boot. A datapoint with no task desired
   reads 0 (leaving zero is the wake policy's job). Its own scale-in is disabled:
   target tracking computes ceil(desired * metric / target), which drops to zero whenever the queue is empty
   for 15 minutes; scale-in is the job of policies 4 and 5.
2. `age-guard` step scaling on ApproximateAgeOfOldestMessage (Maximum, 1 minute, 2 of 2 datapoints): when the
   oldest photo reaches GUARD_STEPS fractions of the SLA, add the matching share of max_tasks
   (ChangeInCapacity; the last step adds max_tasks, i.e. goes to the maximum). This is the safety net for
   traffic target tracking reacts to too slowly (a burst on a small fleet). With `wake: sla` (and min_tasks 0)
   it acts only when the plan is failing: some task is desired, every desired task runs, and the backlog is more
   than the running tasks clear at the slowest instance type's rate before GUARD_DEADLINE_SHARE of the SLA
   (otherwise the metric reads 0). An old photo is then the intended result of waking late, not a sign of too
   few tasks; and the guard sets (ExactCapacity) the tasks that would clear that backlog in time, rounded up to
   a level (`guard_need_metric`), not a share of max_tasks: a burst on a woken task adds one task, not seven.
3. `wake` (only when min_tasks == 0) step scaling on a metric that reads the visible messages while no task is
   desired, and is 0 otherwise, ExactCapacity sized for the backlog found: ceil(visible / target) rounded up to
   1, 2, 4, 8, ... max_tasks. Target tracking cannot start a fleet from zero (ceil(0 * x) = 0), so this is the
   only way out of zero.
   - `wake: immediate`: on the first visible message (visible >= 1).
   - `wake: sla` (the default): when the SLA's slack runs low, not on the first photo: once the oldest photo's
     age plus the time one task of the slowest type takes to drain the visible backlog and what arrives while
     the fleet wakes (NumberOfMessagesSent per minute times the wake reaction) reaches `wake_deadline`:

         wake_reaction = metric_delay + P + instance_launch + image_pull + task_start
         wake_deadline = S - WAKE_MARGIN_SHARE * S - wake_reaction

     so the oldest photo is classified about WAKE_MARGIN_SHARE of the SLA before its deadline (photos are taken
     oldest first), and the photos gathered behind it before the deadline too: a lone photo waits until
     `wake_deadline`, a backlog for as long as one task could still drain it in time. The metric then reads the
     visible backlog, at least `wake_backlog` (the threshold: what one slowest task drains in WAKE_DRAIN_SHARE
     of the SLA), so the steps size the fleet by the backlog. The margin absorbs slower hosts, launches, pulls
     and metrics than the YAML says (the simulator's sensitivity runs check 2x launch, 2x pull, 300 s metric
     delay and 0.6x throughput). Counting the arrivals matters when they are steady: without them a task woken
     late for a busy evening tail starts behind, and the guard adds tasks it would not have needed.
4. `shrink` step scaling on IF(tasks > 1, backlog / tasks, target) <= SHRINK_BELOW * target for
   SHRINK_MINUTES datapoints: PercentChangeInCapacity -SHRINK_PERCENT (at least one task). Never below one
   task; tasks holding messages are protected by ECS task scale-in protection, so a busy task finishes its
   batch before it stops.
5. `idle` (only when min_tasks == 0) step scaling, ExactCapacity min_tasks, the only policy that reaches zero:
   - `immediate`: visible + not visible <= 0 for scale_in_idle_minutes datapoints;
   - `sla`, for IDLE_AFTER_DRAIN_MINUTES datapoints: an empty queue, or at most batch_size messages while a
     task runs, the oldest photo is under IDLE_MAX_AGE_SECONDS and the queue receives (NumberOfMessagesSent)
     under wake_backlog per IDLE_MIN_GATHER_MINUTES: a fleet that has drained what it was woken for keeps up
     with a trickle at a fraction of one task's speed, so it goes back to zero and gathers again (duty cycling).
     Whatever its size: a burst's extra tasks that shrink would take an hour to step down go at once too.
   The same alarm sets the host group to min_tasks hosts (below). With `wake: sla` the worker reads the same
   conditions itself, at once, and sets service and group to zero (`WorkerRelease`, worker/release.py); the alarm
   is then the fallback for a worker whose calls fail.

Hosts (`HostScaling`; the EC2 Auto Scaling group behind the capacity provider, one GPU task per host). ECS
managed scaling is off: its scale-in alarm needs 15 one-minute datapoints, it waits 15 minutes after any
scale-out before it scales in, and from zero instances it starts two
(AmazonECS/latest/developerguide/managed-scaling-behavior.html); the simulator's model of it (one host a task,
15 empty minutes, not the second instance) already cost about 23 host-minutes a wake against the oracle's 7.
Instead EC2 Auto Scaling step scaling policies, all ExactCapacity, size the group from the same metrics that size
the tasks:

- the `wake` alarm also sets the hosts its step asks for (rounded up to a host level), in the same minute;
- the `idle` alarm also sets min_tasks hosts: the hosts go right after the tasks, and ECS managed draining
  lets a task still finishing its batch stop before its host terminates;
- `hosts-follow` (1 datapoint) raises the group to the host level of `hosts_wanted` (the desired or running
  tasks, or what target tracking will ask for once its 3 datapoints are in, whichever is most) while a task is
  desired and the queue holds messages; `hosts-trim` (TRIM_DATAPOINTS) lowers it to that level while a task is
  desired; `hosts-release` (RELEASE_DATAPOINTS) sets 0 while no task is desired or running, a safety net for a
  host the idle alarm's release left behind.

EC2 Auto Scaling step policies have no cooldown and, invoked together, the group takes the largest capacity, so
the alarms are written never to ask for opposite changes on one datapoint. A step scaling policy has at most
HOST_STEPS_MAX steps: host counts are every count up to some level, then every second (third, ...) one
(`host_levels`). The group's termination policy knows nothing of tasks: a trim may pick a host that runs one, and
managed draining then stops that task once its batch is done while the service starts a replacement on a host
that stays (the simulator assumes the worst: busy hosts go first).

Step bounds are absolute metric values (seconds or messages) as `ScalingInterval` takes them (see `Step`).
Target tracking's own alarms are fixed by AWS (3 datapoints above the target to scale out, 15 below 90% of it
to scale in); `TargetTracking` records them for the simulator.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from stacks.config import WorkerConfig

AdjustmentType = Literal["ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"]
Comparison = Literal["GreaterThanOrEqualToThreshold", "LessThanOrEqualToThreshold"]
Resource = Literal["queue", "service", "group"]

# Share of the SLA a photo may spend queued when the fleet is sized right; the rest of the SLA absorbs reaction
# time and traffic the target tracking policy has not caught up with yet (the age guard covers that part).
# 0.4 where the guard reads the bare age (`wake: immediate`, or a minimum fleet): the queue must stay under the
# guard's first step (25% of the SLA), or every steady day trips it. 0.45 with `wake: sla`, whose guard only counts
# an age the running tasks cannot clear: a short burst queues instead of waking hosts it does not need (two bursts
# 1.78 to 1.39 times the oracle, burst 1.17 to 1.09, daily 1.07 to 1.08); the simulator's sensitivity cases still
# keep every photo within the SLA.
TARGET_SHARE = 0.4
SLA_WAKE_TARGET_SHARE = 0.45
# (fraction of the SLA reached by the oldest photo, fraction of max_tasks added); the last step adds max_tasks.
GUARD_STEPS: tuple[tuple[float, float], ...] = ((0.25, 0.1), (0.5, 0.25), (0.75, 1.0))
GUARD_DATAPOINTS = 2
# `wake: sla`: the guard acts only if the running tasks cannot clear the backlog before this share of the SLA
# (and then sets the tasks that can); below the SLA less the wake margin, so a wake that goes to plan never trips
# it, and short of the SLA itself, so a failing plan still gets tasks in time.
GUARD_DEADLINE_SHARE = 0.925
# `wake: sla`: the oldest photo is to be classified this share of the SLA before its deadline; the wake metric's
# floor (and threshold) is what one slowest task drains in WAKE_DRAIN_SHARE of the SLA.
WAKE_MARGIN_SHARE = 0.15
WAKE_DRAIN_SHARE = 0.1
# `wake: sla`: minutes of an empty queue before the fleet goes back to zero. One: a datapoint with nothing visible
# and nothing in flight means every gathered photo is classified, and a photo arriving after it has its whole SLA
# ahead and waits for the next wake like any other (two cost a host-minute a wake for nothing the SLA needs). The
# hosts-trim alarm repeats this condition, so it must stay one datapoint.
IDLE_AFTER_DRAIN_MINUTES = 1
# `wake: sla`: a task keeping the oldest photo younger than this keeps up with the traffic.
IDLE_MAX_AGE_SECONDS = 120
# `wake: sla`: a trickle is slow enough to gather again if the wake backlog takes this long to arrive (a wake costs
# about 7 host-minutes when the worker releases the fleet, 11 through the idle alarm; see `_sla_idle_expression`).
IDLE_MIN_GATHER_MINUTES = 5
# `wake: sla`: the worker's own release needs one whole long poll (the SQS maximum, the worker's wait) with nothing.
RELEASE_EMPTY_WAIT_SECONDS = 20
# Shrink by this share of the fleet once backlog per task stays below SHRINK_BELOW * target this long.
SHRINK_BELOW = 0.5
SHRINK_MINUTES = 15
SHRINK_PERCENT = 20
# EC2 Auto Scaling allows this many step adjustments in one step scaling policy (a fixed quota), so host counts
# above what fits are rounded up to every second (third, ...) count.
HOST_STEPS_MAX = 20
# Datapoints the group's trim alarm needs: the group's and the service's metrics are sampled at different instants
# of the minute, so one datapoint right after a wake may show the new hosts beside the old task count.
TRIM_DATAPOINTS = 2
# Datapoints of no task desired or running beside hosts before the group's own release alarm lets them go: a safety
# net for hosts the idle alarm's release left (another policy asked for more in the same minute); one more than the
# trim alarm, so a wake whose task count reaches CloudWatch a datapoint late is not undone.
RELEASE_DATAPOINTS = 3
# Application Auto Scaling's own alarms for target tracking policies (not configurable).
TT_HIGH_DATAPOINTS = 3
TT_LOW_DATAPOINTS = 15
TT_LOW_RATIO = 0.9


@dataclass(frozen=True)
class MetricQuery:
    """One CloudWatch metric inside a metric math expression; `resource` says whose dimensions it takes
    (`queue`: QueueName of the work queue; `service`: ClusterName + ServiceName of the ECS service; `group`:
    AutoScalingGroupName of the hosts)."""

    id: str
    namespace: str
    metric_name: str
    statistic: str
    resource: Resource


@dataclass(frozen=True)
class MetricSpec:
    """A CloudWatch metric math expression over `queries`, evaluated per `period_seconds`. `parts` are named
    expressions, evaluated in order, that later parts and `expression` use by name (an alarm holds up to 10
    expressions and 10 metrics)."""

    expression: str
    queries: tuple[MetricQuery, ...]
    period_seconds: int
    label: str
    parts: tuple[tuple[str, str], ...] = ()


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
    # The same alarm also invokes an EC2 Auto Scaling step scaling policy on the host group, ExactCapacity hosts by
    # these steps (same bounds as `steps`); empty: the alarm acts on the service only.
    host_steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class HostScaling:
    """How the GPU hosts (the EC2 Auto Scaling group behind the ECS capacity provider) follow the tasks.

    `managed`: ECS managed scaling sizes the group (the reference designs; the simulator keeps an empty host
    HOST_IDLE_SECONDS). Otherwise managed scaling is off and the group is sized by EC2 Auto Scaling step scaling
    policies, all ExactCapacity: the `host_steps` of the service's step policies (the same alarm acts on both) and
    `policies`, alarms whose only action is on the group. EC2 Auto Scaling step policies have no cooldown, and when
    several are invoked at once the group takes the largest capacity.
    """

    managed: bool
    min_hosts: int = 0
    max_hosts: int = 0
    policies: tuple[StepPolicy, ...] = ()


MANAGED_HOSTS = HostScaling(managed=True)


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
class WorkerRelease:
    """`wake: sla`: the worker itself sends the fleet back to zero, the moment it sees what the idle alarm waits
    for, instead of three minutes later when the datapoint reaches CloudWatch (worker/release.py; the idle alarm
    stays as the fallback). After a receive, it sets the service's desired count and the host group's desired
    capacity to `min_tasks` (0) when:

    - `empty`: a whole long poll of `empty_wait_seconds` returned nothing and the queue reports no message visible,
      in flight or delayed (every photo is classified; one arriving later has its whole SLA ahead), whatever the
      fleet; or
    - `caught up`: a task of the service runs, the queue holds at most `caught_up_messages`, the oldest photo it
      received last is under `max_age_seconds` old, and fewer than `slow_arrivals_per_minute` photos were sent in
      the last minute (the idle alarm's `sla` condition, read at once).
    """

    empty_wait_seconds: int
    caught_up_messages: int
    max_age_seconds: int
    slow_arrivals_per_minute: int


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
    hosts: HostScaling = MANAGED_HOSTS
    release: WorkerRelease | None = None


VISIBLE = MetricQuery("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", "queue")
INFLIGHT = MetricQuery("inflight", "AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "Maximum", "queue")
AGE = MetricQuery("age", "AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", "queue")
SENT = MetricQuery("sent", "AWS/SQS", "NumberOfMessagesSent", "Sum", "queue")
DESIRED = MetricQuery("tasks", "ECS/ContainerInsights", "DesiredTaskCount", "Average", "service")
RUNNING = MetricQuery("tasks", "ECS/ContainerInsights", "RunningTaskCount", "Average", "service")
# The running count beside the desired one (`tasks`) in the same expression.
RUNNING_BESIDE_DESIRED = MetricQuery("running", "ECS/ContainerInsights", "RunningTaskCount", "Average", "service")
# The host group's desired capacity (an Auto Scaling group metric; the group publishes it once group metrics are on).
HOSTS = MetricQuery("hosts", "AWS/AutoScaling", "GroupDesiredCapacity", "Maximum", "group")
# The host alarms read the task counts' Maximum: a minute in which a task was desired or ran needs its host.
MOST_DESIRED = MetricQuery("tasks", "ECS/ContainerInsights", "DesiredTaskCount", "Maximum", "service")
MOST_RUNNING = MetricQuery("running", "ECS/ContainerInsights", "RunningTaskCount", "Maximum", "service")


def referenced_ids(expression: str) -> set[str]:
    """The metric or part ids a metric math expression uses (function names excluded)."""
    tree = ast.parse(expression, mode="eval")
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called}


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
    """How long a photo may wait in a right-sized fleet: TARGET_SHARE (SLA_WAKE_TARGET_SHARE with `wake: sla`) of
    the SLA less the reaction time."""
    sla_wake = worker.scaling.wake == "sla" and worker.scaling.min_tasks == 0
    share = int((SLA_WAKE_TARGET_SHARE if sla_wake else TARGET_SHARE) * worker.sla_minutes * 60)
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


def wake_deadline_seconds(worker: WorkerConfig) -> int:
    """`wake: sla`: the fleet leaves zero once the oldest photo's age plus the time one task of the slowest type
    takes to drain the visible backlog reaches this (the SLA less the wake margin and the wake reaction)."""
    sla = worker.sla_minutes * 60
    return max(round(sla * (1 - WAKE_MARGIN_SHARE)) - wake_reaction_seconds(worker), 0)


def wake_backlog(worker: WorkerConfig) -> float:
    """`wake: sla`: the wake alarm's threshold and its metric's floor once the deadline condition holds: what one
    task of the slowest instance type drains in WAKE_DRAIN_SHARE of the SLA."""
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


def tracked_backlog_metric(period: int) -> MetricSpec:
    """(visible + not visible) / desired tasks, and 0 while the datapoint shows no task desired. Waking from zero is
    the wake policy's business; counting an empty fleet as one task made target tracking size the fleet again right
    after a wake, from the whole backlog over one task times the tasks the wake had just asked for."""
    return MetricSpec(
        expression="IF(FILL(tasks, 0) < 1, 0, (visible + inflight) / tasks)",
        queries=(VISIBLE, INFLIGHT, DESIRED),
        period_seconds=period,
        label="backlog per desired task",
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
    """`wake: sla`: while no task is desired and a photo is visible, the visible messages (at least `wake_backlog`,
    the alarm's threshold) once the oldest photo's age plus the time one task of the slowest type takes to drain
    them and what arrives while the fleet wakes reaches `wake_deadline`; 0 otherwise. With nothing visible it reads
    0 (the age metric can still show a message just deleted; the idle alarm releases on that datapoint).

    Photos are classified oldest first, so a trickle's oldest photo is the one that binds: a single photo waits
    until `wake_deadline`, a backlog as long as one task could still drain it in time."""
    backlog = f"{wake_backlog(worker):g}"
    return MetricSpec(
        expression=(
            f"IF(FILL(tasks, 0) < 1, IF(visible < 1, 0, IF({_wake_due(worker, 'age', 'visible')}, "
            f"IF(visible > {backlog}, visible, {backlog}), 0)), 0)"
        ),
        queries=(VISIBLE, AGE, SENT, DESIRED),
        period_seconds=worker.simulation.metric_period_seconds,
        label=f"visible messages while no task runs, once age + drain reaches {wake_deadline_seconds(worker)} s",
    )


def _wake_due(worker: WorkerConfig, age: str, visible: str) -> str:
    """Metric math: the oldest photo's age plus the slowest task's drain of the backlog and of what arrives during
    the wake reaction reaches `wake_deadline`."""
    rate = f"{slowest_images_per_second(worker):g}"
    periods = f"{wake_reaction_seconds(worker) / worker.simulation.metric_period_seconds:g}"
    return f"{age} + ({visible} + FILL(sent, 0) * {periods}) / {rate} >= {wake_deadline_seconds(worker)}"


def guard_need_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: while the fleet in place cannot keep the SLA, the tasks that can (rounded up to a level); else 0.

    0 with no task desired (the wake policy owns that) or while a desired task has not started (the plan is being
    carried out); otherwise, if the backlog exceeds what the running tasks clear at the slowest instance type's
    rate before GUARD_DEADLINE_SHARE of the SLA, the tasks that would clear it by then at that rate (all of them
    once less than a minute is left). Such a datapoint always asks for more tasks than run.
    """
    rate = f"{slowest_images_per_second(worker):g}"
    deadline = round(GUARD_DEADLINE_SHARE * worker.sla_minutes * 60)
    most = worker.scaling.max_tasks
    period = worker.simulation.metric_period_seconds
    return MetricSpec(
        expression=(
            "IF(FILL(tasks, 0) < 1, 0, IF(FILL(running, 0) < tasks, 0, "
            f"IF(visible + inflight > {rate} * running * left, level, 0)))"
        ),
        queries=(VISIBLE, INFLIGHT, AGE, DESIRED, RUNNING_BESIDE_DESIRED),
        period_seconds=period,
        label="tasks that clear the backlog in time, while the running ones cannot",
        parts=(
            ("left", f"{deadline} - age"),
            # The divisor never reaches zero, whichever way CloudWatch evaluates IF's branches.
            (
                "need",
                f"IF(left < {period}, {most}, "
                f"CEIL((visible + inflight) / ({rate} * IF(left < {period}, {period}, left))))",
            ),
            ("level", level_expression(f"IF(need > {most}, {most}, need)", most)),
        ),
    )


def queue_metric(period: int) -> MetricSpec:
    return MetricSpec(
        expression="visible + inflight",
        queries=(VISIBLE, INFLIGHT),
        period_seconds=period,
        label="messages in the queue",
    )


def idle_periods(worker: WorkerConfig) -> int:
    """Datapoints the idle alarm needs (IDLE_AFTER_DRAIN_MINUTES with `wake: sla`, else scale_in_idle_minutes)."""
    sla_wake = worker.scaling.wake == "sla" and worker.scaling.min_tasks == 0
    minutes = IDLE_AFTER_DRAIN_MINUTES if sla_wake else worker.scaling.scale_in_idle_minutes
    return max(1, minutes * 60 // worker.simulation.metric_period_seconds)


def sla_idle_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: 0 for an empty queue, and the messages in the queue while a task runs, the oldest photo is
    younger than IDLE_MAX_AGE_SECONDS and the photos sent are a trickle (the fleet has drained what it was woken
    for); otherwise one batch more than the idle threshold."""
    return MetricSpec(
        expression=_sla_idle_expression(worker),
        # The running count's Maximum, as the host alarms that repeat this condition read it.
        queries=(VISIBLE, INFLIGHT, AGE, SENT, MOST_RUNNING),
        period_seconds=worker.simulation.metric_period_seconds,
        label="messages in the queue while the fleet keeps up with a trickle",
    )


def _sla_idle_expression(worker: WorkerConfig) -> str:
    busy = worker.batch_size + 1
    period = worker.simulation.metric_period_seconds
    # Gathering again pays off only if the next wake is far enough: a wake costs about 7 host-minutes when the worker
    # releases the fleet (6 to start, a long poll, 1 to release the host; about 4 more when only this alarm does),
    # and idling until the next wake's host is up costs the gathering plus about 3 minutes of alarm lag plus the
    # start: from about a 4-minute gather on, cycling is cheaper (docs/scaling.md has the sweep behind the 5).
    trickle = round(slow_arrivals_per_minute(worker) * period / 60)
    return (
        f"IF(visible + inflight < 1, 0, IF(FILL(running, 0) < 1, {busy}, "
        f"IF(age > {IDLE_MAX_AGE_SECONDS}, {busy}, IF(FILL(sent, 0) > {trickle}, {busy}, visible + inflight))))"
    )


def slow_arrivals_per_minute(worker: WorkerConfig) -> float:
    """`wake: sla`: arrivals a minute below which a fleet that has caught up goes back to zero (a wake's
    backlog takes IDLE_MIN_GATHER_MINUTES or more to gather)."""
    return wake_backlog(worker) / IDLE_MIN_GATHER_MINUTES


def worker_release(worker: WorkerConfig) -> WorkerRelease | None:
    """What the worker watches to send the fleet back to zero itself (`wake: sla` with min_tasks 0; else None)."""
    if worker.scaling.wake != "sla" or worker.scaling.min_tasks > 0:
        return None
    return WorkerRelease(
        empty_wait_seconds=RELEASE_EMPTY_WAIT_SECONDS,
        caught_up_messages=worker.batch_size,
        max_age_seconds=IDLE_MAX_AGE_SECONDS,
        slow_arrivals_per_minute=round(slow_arrivals_per_minute(worker)),
    )


def host_levels(max_hosts: int) -> tuple[int, ...]:
    """The host counts the group's ExactCapacity steps can set, at most HOST_STEPS_MAX of them: every count up to
    some `exact`, then every `stride`-th, the last max_hosts (1..14, 16, 18, ..., 26 for 26)."""
    exact, stride = _level_shape(max_hosts)
    return tuple(range(1, exact + 1)) + tuple(
        min(level, max_hosts) for level in range(exact + stride, max_hosts + stride, stride)
    )


def _level_shape(max_hosts: int) -> tuple[int, int]:
    """(exact, stride): the smallest stride, then the most counts one by one, that fit HOST_STEPS_MAX levels."""
    stride = 1
    while True:
        for exact in range(max_hosts, 0, -1):
            if exact + math.ceil((max_hosts - exact) / stride) <= HOST_STEPS_MAX:
                return exact, stride
        stride += 1


def round_up_to_level(count: int, max_hosts: int) -> int:
    """The smallest host level (see `host_levels`) at or above `count` (0 stays 0; above the maximum: the maximum)."""
    if count <= 0:
        return 0
    return next((level for level in host_levels(max_hosts) if level >= count), max_hosts)


def level_expression(value: str, max_hosts: int) -> str:
    """Metric math rounding `value` (a whole number of tasks) up to a host level."""
    exact, stride = _level_shape(max_hosts)
    if stride == 1:
        return value
    up = f"{exact} + {stride} * CEIL(({value} - {exact}) / {stride})"
    if (max_hosts - exact) % stride:
        up = f"IF({up} > {max_hosts}, {max_hosts}, {up})"
    return f"IF({value} > {exact}, {up}, {value})"


def host_level_steps(max_hosts: int) -> tuple[Step, ...]:
    """ExactCapacity steps for a metric that reads a host level: each level sets that many hosts."""
    levels = host_levels(max_hosts)
    return tuple(
        Step(lower=float(level), upper=float(levels[i + 1]) if i + 1 < len(levels) else None, adjustment=level)
        for i, level in enumerate(levels)
    )


def hosts_wanted_parts(worker: WorkerConfig) -> tuple[tuple[str, str], ...]:
    """Metric math parts ending in `level`, the host level the tasks need: the desired or the running tasks,
    whichever is more (a task finishing its batch after a scale-in still runs), or, when the backlog per desired
    task is above the target tracking policy's target, what that policy will ask for once its alarm has its 3
    datapoints, ceil(backlog / target), so the hosts start booting two datapoints before the tasks are desired."""
    target = f"{backlog_target(worker):g}"
    return (
        ("backlog", "FILL(visible, 0) + FILL(inflight, 0)"),
        # Unfilled: FILL would read a task count that reaches CloudWatch late as 0 (CloudWatch, "Metric math syntax
        # and functions", FILL); a missing datapoint here only means no host change this minute.
        ("busy", "IF(running > tasks, running, tasks)"),
        ("ahead", f"IF(backlog > {target} * IF(FILL(tasks, 0) < 1, 1, FILL(tasks, 0)), CEIL(backlog / {target}), 0)"),
        ("need", "CEIL(IF(ahead > busy, ahead, busy))"),
        ("level", level_expression("need", worker.scaling.max_tasks)),
    )


def _idle_part(worker: WorkerConfig) -> tuple[tuple[tuple[str, str], ...], tuple[MetricQuery, ...]]:
    """A part `idle`, 1 on a datapoint where the idle alarm releases every host (with min_tasks 0), else 0: the
    group's other alarms must not ask for hosts on that datapoint, or the group would keep (or, acting after the
    release, launch) one. With `wake: sla` the idle alarm needs one datapoint and its condition is repeated here;
    otherwise (scale_in_idle_minutes of an empty queue) an empty queue counts, and hosts beyond the tasks wait with
    them. Also the queries the parts read."""
    queries: tuple[MetricQuery, ...] = (VISIBLE, INFLIGHT, MOST_DESIRED, MOST_RUNNING, HOSTS)
    if worker.scaling.min_tasks > 0:
        return (("idle", "0"),), queries
    if worker.scaling.wake == "sla" and idle_periods(worker) == 1:
        idle = f"{_sla_idle_expression(worker)} <= {worker.batch_size}"
        return (("idle", idle),), (VISIBLE, INFLIGHT, AGE, SENT, MOST_DESIRED, MOST_RUNNING, HOSTS)
    return (("idle", "backlog < 1"),), queries


def host_follow_metric(worker: WorkerConfig) -> MetricSpec:
    """The hosts wanted (`hosts_wanted_parts`) while more than the group's desired capacity and a task is desired,
    else 0 (leaving zero is the wake alarm's business; the idle alarm's datapoints read 0 too, see `_idle_part`)."""
    return _host_level_metric(worker, "level > FILL(hosts, 0)", "more")


def host_trim_metric(worker: WorkerConfig) -> MetricSpec:
    """The hosts wanted while fewer than the group's desired capacity and a task is desired, else 0 (going to zero
    is the idle and release alarms' business). The same parts as the follow alarm's, so the two never ask for
    opposite changes on one datapoint."""
    return _host_level_metric(worker, "FILL(hosts, 0) > level", "fewer")


def _host_level_metric(worker: WorkerConfig, condition: str, than: str) -> MetricSpec:
    idle, queries = _idle_part(worker)
    return MetricSpec(
        expression=f"IF(FILL(tasks, 0) < 1, 0, IF(idle, 0, IF({condition}, level, 0)))",
        queries=queries,
        period_seconds=worker.simulation.metric_period_seconds,
        label=f"hosts the tasks need, while {than} than the group has",
        parts=hosts_wanted_parts(worker) + idle,
    )


def _wake_breaching(worker: WorkerConfig) -> str:
    """Metric math that is 1 where the wake alarm's metric reaches its threshold while no task is desired."""
    if worker.scaling.wake != "sla":
        return "FILL(visible, 0) >= 1"
    due = _wake_due(worker, "FILL(age, 0)", "FILL(visible, 0)")
    return f"IF(FILL(visible, 0) < 1, 0, IF({due}, 1, 0))"


def host_release_metric(worker: WorkerConfig) -> MetricSpec:
    """The group's desired capacity while no task is desired or running, else 0; and 0 where the wake alarm fires
    (it asks for hosts on that datapoint)."""
    return MetricSpec(
        # Unfilled task counts: a Container Insights datapoint that is late must not read as "no task" here.
        expression="IF(tasks + running < 1, IF(waking, 0, FILL(hosts, 0)), 0)",
        queries=(VISIBLE, AGE, SENT, MOST_DESIRED, MOST_RUNNING, HOSTS)
        if worker.scaling.wake == "sla"
        else (VISIBLE, MOST_DESIRED, MOST_RUNNING, HOSTS),
        period_seconds=worker.simulation.metric_period_seconds,
        label="hosts while no task is desired or running",
        parts=(("waking", _wake_breaching(worker)),),
    )


def host_scaling(worker: WorkerConfig) -> HostScaling:
    """The group's own alarms: follow the tasks up, trim hosts they no longer need, release strays (ExactCapacity;
    EC2 Auto Scaling step policies take no cooldown)."""
    scaling, period = worker.scaling, worker.simulation.metric_period_seconds
    levels = host_level_steps(scaling.max_tasks)

    def policy(name: str, metric: MetricSpec, datapoints: int, steps: tuple[Step, ...]) -> StepPolicy:
        periods = datapoints * 60 // period
        return StepPolicy(name, metric, "GreaterThanOrEqualToThreshold", 1, periods, periods, "ExactCapacity", steps, 0)

    policies = [
        policy("hosts-follow", host_follow_metric(worker), 1, levels),
        policy("hosts-trim", host_trim_metric(worker), TRIM_DATAPOINTS, levels),
    ]
    if scaling.min_tasks == 0:
        policies.append(policy("hosts-release", host_release_metric(worker), RELEASE_DATAPOINTS, (Step(1, None, 0),)))
    return HostScaling(
        managed=False, min_hosts=scaling.min_tasks, max_hosts=scaling.max_tasks, policies=tuple(policies)
    )


def derive_policy(worker: WorkerConfig) -> ScalingPolicy:
    """The scaling policy the construct deploys for `worker` (see the module docstring for the formula)."""
    scaling, sim = worker.scaling, worker.simulation
    period = sim.metric_period_seconds
    sla = worker.sla_minutes * 60
    target = backlog_target(worker)
    provision = sim.instance_launch_seconds + sim.image_pull_seconds + sim.task_start_seconds
    backlog = tracked_backlog_metric(period)

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
        metric=guard_need_metric(worker) if sla_wake else age_metric(period),
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1.0 if sla_wake else float(round(GUARD_STEPS[0][0] * sla)),
        evaluation_periods=GUARD_DATAPOINTS,
        datapoints_to_alarm=GUARD_DATAPOINTS,
        adjustment_type="ExactCapacity" if sla_wake else "ChangeInCapacity",
        steps=host_level_steps(scaling.max_tasks) if sla_wake else age_guard_steps(sla, scaling.max_tasks),
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
                # Hosts for the tasks in the same minute, not a datapoint later through the follow alarm.
                host_steps=tuple(
                    Step(s.lower, s.upper, round_up_to_level(s.adjustment, scaling.max_tasks))
                    for s in wake_steps(target, scaling.max_tasks, first)
                ),
            )
        )
        periods = idle_periods(worker)
        # `sla`: one task holding at most a batch has drained what was gathered and keeps up with a trickle;
        # back to zero, to gather again. `immediate`: only an empty queue.
        idle_below = float(worker.batch_size) if sla_wake else 0.0
        steps.append(
            StepPolicy(
                name="idle",
                metric=sla_idle_metric(worker) if sla_wake else queue_metric(period),
                comparison="LessThanOrEqualToThreshold",
                threshold=idle_below,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                adjustment_type="ExactCapacity",
                steps=(Step(lower=None, upper=idle_below, adjustment=scaling.min_tasks),),
                cooldown_seconds=period,
                # The hosts go with the tasks, not after the capacity provider's 15 empty minutes: managed
                # draining stops a task still finishing its batch before its host terminates.
                host_steps=(Step(lower=None, upper=idle_below, adjustment=scaling.min_tasks),),
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
        hosts=host_scaling(worker),
        release=worker_release(worker),
    )
