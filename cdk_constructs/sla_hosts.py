"""The GPU host group's scaling (`HostScaling`): EC2 Auto Scaling step policies that size the Auto Scaling group
behind the ECS capacity provider, one GPU task per host, from the same metrics that size the tasks.

ECS managed scaling is off: its scale-in alarm needs 15 one-minute datapoints, it waits 15 minutes after any
scale-out before it scales in, and from zero instances it starts two
(AmazonECS/latest/developerguide/managed-scaling-behavior.html); the simulator's model of it (one host a task,
15 empty minutes, not the second instance) already cost about 23 host-minutes a wake against the oracle's 7.
Instead EC2 Auto Scaling step scaling policies, all ExactCapacity, size the group:

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_constructs.sla_model import (
    AGE,
    HOSTS,
    INFLIGHT,
    MOST_DESIRED,
    MOST_RUNNING,
    SENT,
    VISIBLE,
    HostScaling,
    MetricQuery,
    MetricSpec,
    Step,
    StepPolicy,
    host_level_steps,
    level_expression,
)
from cdk_constructs.sla_timing import backlog_target, idle_periods, sla_idle_expression, wake_due

if TYPE_CHECKING:
    from stacks.config import WorkerConfig

# Datapoints the group's trim alarm needs: the group's and the service's metrics are sampled at different instants
# of the minute, so one datapoint right after a wake may show the new hosts beside the old task count.
TRIM_DATAPOINTS = 2
# Datapoints of no task desired or running beside hosts before the group's own release alarm lets them go: a safety
# net for hosts the idle alarm's release left (another policy asked for more in the same minute); one more than the
# trim alarm, so a wake whose task count reaches CloudWatch a datapoint late is not undone.
RELEASE_DATAPOINTS = 3


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
        idle = f"{sla_idle_expression(worker)} <= {worker.batch_size}"
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
    """Metric math that is 1 where the wake alarm's metric reaches its threshold while no task is desired, leaving
    out its other condition, no delete in the minute (`NO_FLEET`): 1 on every datapoint where the wake acts, and
    on a few more (the minute after a release), where the release alarm then only waits a datapoint longer."""
    if worker.scaling.wake != "sla":
        return "FILL(visible, 0) >= 1"
    due = wake_due(worker, "FILL(age, 0)", "FILL(visible, 0)")
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
