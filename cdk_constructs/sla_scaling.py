"""The SLA-driven scaling policy of a GPU queue worker, as plain numbers the CDK construct turns into resources.

`derive_policy(worker)` reads one worker definition (`config/workers/<name>.yaml`) and returns a frozen
`ScalingPolicy`: everything Application Auto Scaling, EC2 Auto Scaling and CloudWatch need, and nothing else. The
construct deploys it and `python -m tools.scaling_sim` replays traffic against the very same object, so the policy
simulated is the policy deployed. This module and its three companions (sla_model, sla_timing, sla_hosts) import
no CDK so both can use them.

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

Hosts (`HostScaling`; the EC2 Auto Scaling group behind the capacity provider, one GPU task per host) follow
the tasks through EC2 Auto Scaling step policies of their own: cdk_constructs/sla_hosts.py. The timings and
thresholds above are computed in cdk_constructs/sla_timing.py, and the shapes (`ScalingPolicy` and its parts) are
in cdk_constructs/sla_model.py.

Step bounds are absolute metric values (seconds or messages) as `ScalingInterval` takes them (see `Step`).
Target tracking's own alarms are fixed by AWS (3 datapoints above the target to scale out, 15 below 90% of it
to scale in); `TargetTracking` records them for the simulator.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cdk_constructs.sla_hosts import host_scaling
from cdk_constructs.sla_model import (
    AGE,
    DELETED,
    DESIRED,
    INFLIGHT,
    MOST_RUNNING,
    RUNNING_BESIDE_DESIRED,
    SENT,
    VISIBLE,
    MetricQuery,
    MetricSpec,
    ScalingPolicy,
    Step,
    StepPolicy,
    TargetTracking,
    WorkerRelease,
    host_level_steps,
    level_expression,
    round_up_to_level,
)
from cdk_constructs.sla_timing import (
    GUARD_DEADLINE_SHARE,
    IDLE_MAX_AGE_SECONDS,
    acceptable_latency_seconds,
    backlog_target,
    idle_periods,
    reaction_seconds,
    sla_idle_expression,
    slow_arrivals_per_minute,
    slowest_images_per_second,
    wake_backlog,
    wake_deadline_seconds,
    wake_due,
)

if TYPE_CHECKING:
    from stacks.config import WorkerConfig

# (fraction of the SLA reached by the oldest photo, fraction of max_tasks added); the last step adds max_tasks.
GUARD_STEPS: tuple[tuple[float, float], ...] = ((0.25, 0.1), (0.5, 0.25), (0.75, 1.0))
GUARD_DATAPOINTS = 2
# `wake: sla`: the worker's own release needs one whole long poll (the SQS maximum, the worker's wait) with nothing.
RELEASE_EMPTY_WAIT_SECONDS = 20
# Shrink by this share of the fleet once backlog per task stays below SHRINK_BELOW * target this long.
SHRINK_BELOW = 0.5
SHRINK_MINUTES = 15
SHRINK_PERCENT = 20


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


# The wake alarms act only while no task is desired and the queue saw no delete in the period: a fleet at work
# deletes every minute, and SQS's count arrives with the visible messages it is read beside, so a Container Insights
# task count that is late (FILL reads it as 0) cannot make the wake's ExactCapacity step resize a running fleet.
NO_FLEET = "FILL(tasks, 0) + FILL(deleted, 0) < 1"


def immediate_wake_metric(period: int) -> MetricSpec:
    """`wake: immediate`: the visible messages while no task is desired and none is deleted (`NO_FLEET`)."""
    return MetricSpec(
        expression=f"IF({NO_FLEET}, visible, 0)",
        queries=(VISIBLE, DESIRED, DELETED),
        period_seconds=period,
        label="visible messages while no task runs",
    )


def sla_wake_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: while no task is desired or deleting (`NO_FLEET`) and a photo is visible, the visible messages
    (at least `wake_backlog`, the alarm's threshold) once the oldest photo's age plus the time one task of the
    slowest type takes to drain them and what arrives while the fleet wakes reaches `wake_deadline`; 0 otherwise.
    With nothing visible it reads 0 (the age metric can still show a message just deleted; the idle alarm releases
    on that datapoint).

    Photos are classified oldest first, so a trickle's oldest photo is the one that binds: a single photo waits
    until `wake_deadline`, a backlog as long as one task could still drain it in time."""
    backlog = f"{wake_backlog(worker):g}"
    return MetricSpec(
        expression=(
            f"IF({NO_FLEET}, IF(visible < 1, 0, IF({wake_due(worker, 'age', 'visible')}, "
            f"IF(visible > {backlog}, visible, {backlog}), 0)), 0)"
        ),
        queries=(VISIBLE, AGE, SENT, DESIRED, DELETED),
        period_seconds=worker.simulation.metric_period_seconds,
        label=f"visible messages while no task runs, once age + drain reaches {wake_deadline_seconds(worker)} s",
    )


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


def sla_idle_metric(worker: WorkerConfig) -> MetricSpec:
    """`wake: sla`: 0 for an empty queue, and the messages in the queue while a task runs, the oldest photo is
    younger than IDLE_MAX_AGE_SECONDS and the photos sent are a trickle (the fleet has drained what it was woken
    for); otherwise one batch more than the idle threshold."""
    return MetricSpec(
        expression=sla_idle_expression(worker),
        # The running count's Maximum, as the host alarms that repeat this condition read it.
        queries=(VISIBLE, INFLIGHT, AGE, SENT, MOST_RUNNING),
        period_seconds=worker.simulation.metric_period_seconds,
        label="messages in the queue while the fleet keeps up with a trickle",
    )


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
