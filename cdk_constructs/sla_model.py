"""The shapes of a scaling policy, as `cdk_constructs.sla_scaling.derive_policy` returns them: metric math over
CloudWatch metrics, step and target tracking policies, the host group's policies, the worker's own release, and the
capacity levels one step scaling policy can set.

Plain data, no CDK: cdk_constructs/gpu_worker_scaling.py turns them into resources, and the simulator
(tools/scaling_sim) replays traffic against the very same objects.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Literal

AdjustmentType = Literal["ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"]
Comparison = Literal["GreaterThanOrEqualToThreshold", "LessThanOrEqualToThreshold"]
Resource = Literal["queue", "service", "group"]

# Application Auto Scaling's own alarms for target tracking policies (not configurable).
TT_HIGH_DATAPOINTS = 3
TT_LOW_DATAPOINTS = 15
TT_LOW_RATIO = 0.9
# EC2 Auto Scaling allows this many step adjustments in one step scaling policy (a fixed quota), so host counts
# above what fits are rounded up to every second (third, ...) count.
HOST_STEPS_MAX = 20


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
DELETED = MetricQuery("deleted", "AWS/SQS", "NumberOfMessagesDeleted", "Sum", "queue")
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
