"""CloudWatch alarms, Application Auto Scaling and EC2 Auto Scaling step policies over the datapoints the engine
sends them (`tools.scaling_sim.engine`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from cdk_constructs.sla_model import MetricSpec, ScalingPolicy, Step, StepPolicy, TargetTracking
from tools.scaling_sim.metricmath import evaluate_spec

# (namespace, metric name) -> the snapshot field the simulator reports for it.
METRIC_SOURCES = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): "visible",
    ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible"): "inflight",
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): "age",
    ("AWS/SQS", "NumberOfMessagesSent"): "sent",
    ("AWS/SQS", "NumberOfMessagesDeleted"): "deleted",
    ("ECS/ContainerInsights", "DesiredTaskCount"): "desired",
    ("ECS/ContainerInsights", "RunningTaskCount"): "running",
    ("AWS/AutoScaling", "GroupDesiredCapacity"): "hosts",
}


# --- Application Auto Scaling -----------------------------------------------------------------------------------


@dataclass
class _Cooldown:
    until: float = -math.inf
    base: int = 0  # capacity before the scale-out that started the cooldown


@dataclass
class _PolicyState:
    values: list[float | None] = field(default_factory=list)
    out: _Cooldown = field(default_factory=_Cooldown)
    inward: _Cooldown = field(default_factory=_Cooldown)


class AutoScaler:
    """Alarms and Application Auto Scaling policies of one `ScalingPolicy` over the service's scalable target, and
    the EC2 Auto Scaling step policies on the host group when managed scaling is off."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.tracking = {tt.name: _PolicyState() for tt in policy.target_tracking}
        self.steps = {sp.name: _PolicyState() for sp in policy.step_policies}
        self.host_steps = {sp.name: _PolicyState() for sp in policy.hosts.policies}

    def observe(self, snapshot: dict[str, float | None]) -> None:
        """One datapoint has reached CloudWatch: evaluate every policy's metric math on it."""
        for tt in self.policy.target_tracking:
            self.tracking[tt.name].values.append(metric_value(tt.metric, snapshot))
        for sp in self.policy.step_policies:
            self.steps[sp.name].values.append(metric_value(sp.metric, snapshot))
        for sp in self.policy.hosts.policies:
            self.host_steps[sp.name].values.append(metric_value(sp.metric, snapshot))

    def evaluate(self, now: float, desired: int) -> int:
        """Invoke the policies whose alarms are in ALARM; returns the new desired count."""
        for tt in self.policy.target_tracking:
            desired = self._track(tt, self.tracking[tt.name], now, desired)
        for sp in self.policy.step_policies:
            desired = self._step(sp, self.steps[sp.name], now, desired)
        return desired

    def evaluate_hosts(self, hosts: int) -> int:
        """The group's desired capacity after the EC2 Auto Scaling step policies whose alarms are in ALARM: each
        sets its step's ExactCapacity (step policies have no cooldown), and when several act at once the group
        takes the largest capacity (EC2 Auto Scaling, "Multiple dynamic scaling policies")."""
        wanted: list[int] = []
        for sp in self.policy.step_policies:
            if sp.host_steps:
                wanted += _exact(sp, sp.host_steps, self.steps[sp.name])
        for sp in self.policy.hosts.policies:
            wanted += _exact(sp, sp.steps, self.host_steps[sp.name])
        if not wanted:
            return hosts
        return max(self.policy.hosts.min_hosts, min(self.policy.hosts.max_hosts, max(wanted)))

    def _clamp(self, capacity: int) -> int:
        return max(self.policy.min_capacity, min(self.policy.max_capacity, capacity))

    def _track(self, tt: TargetTracking, state: _PolicyState, now: float, desired: int) -> int:
        high = state.values[-tt.high_alarm_datapoints :]
        if len(high) == tt.high_alarm_datapoints and all(v is not None and v > tt.target_value for v in high):
            value = high[-1]
            assert value is not None
            # During the cooldown the capacity the last scale-out added counts: size from the capacity before it.
            base = state.out.base if now < state.out.until else desired
            wanted = self._clamp(math.ceil(base * value / tt.target_value))
            if wanted > desired:
                if now >= state.out.until:
                    state.out = _Cooldown(now + tt.scale_out_cooldown_seconds, desired)
                return wanted
            return desired
        low = state.values[-tt.low_alarm_datapoints :]
        threshold = tt.low_alarm_ratio * tt.target_value
        if (
            not tt.disable_scale_in
            and now >= state.inward.until
            and len(low) == tt.low_alarm_datapoints
            and all(v is not None and v < threshold for v in low)
        ):
            value = low[-1]
            assert value is not None
            wanted = self._clamp(math.ceil(desired * value / tt.target_value))
            if wanted < desired:
                state.inward = _Cooldown(now + tt.scale_in_cooldown_seconds, desired)
                return wanted
        return desired

    def _step(self, sp: StepPolicy, state: _PolicyState, now: float, desired: int) -> int:
        value = _alarm_value(sp, state)
        if value is None:
            return desired
        below = sp.comparison == "LessThanOrEqualToThreshold"
        step = next((s for s in sp.steps if s.contains(value, below_threshold=below)), None)
        if step is None:
            return desired
        cooling = now < state.out.until
        base = state.out.base if cooling and sp.adjustment_type != "ExactCapacity" else desired
        wanted = self._clamp(_adjust(sp, step.adjustment, base))
        if wanted > desired:
            if not cooling:
                state.out = _Cooldown(now + sp.cooldown_seconds, desired)
            return wanted
        if wanted < desired and not cooling:
            state.out = _Cooldown(now + sp.cooldown_seconds, desired)
            return wanted
        return desired


def _alarm_value(sp: StepPolicy, state: _PolicyState) -> float | None:
    """The latest datapoint while the alarm is in ALARM (datapoints_to_alarm of the last evaluation_periods
    breach), else None."""
    recent = state.values[-sp.evaluation_periods :]
    below = sp.comparison == "LessThanOrEqualToThreshold"
    breaching = sum(1 for v in recent if v is not None and (v <= sp.threshold if below else v >= sp.threshold))
    value = recent[-1] if recent else None
    return value if breaching >= sp.datapoints_to_alarm else None


def _exact(sp: StepPolicy, steps: tuple[Step, ...], state: _PolicyState) -> list[int]:
    """The ExactCapacity an alarm in ALARM asks of the group through `steps` ([] when none applies)."""
    value = _alarm_value(sp, state)
    if value is None:
        return []
    below = sp.comparison == "LessThanOrEqualToThreshold"
    step = next((s for s in steps if s.contains(value, below_threshold=below)), None)
    return [] if step is None else [step.adjustment]


def _adjust(sp: StepPolicy, adjustment: int, capacity: int) -> int:
    if sp.adjustment_type == "ExactCapacity":
        return adjustment
    if sp.adjustment_type == "ChangeInCapacity":
        return capacity + adjustment
    change = int(capacity * adjustment / 100)  # Application Auto Scaling rounds toward zero
    if sp.min_adjustment_magnitude and abs(change) < sp.min_adjustment_magnitude:
        change = int(math.copysign(sp.min_adjustment_magnitude, adjustment))
    return capacity + change


def metric_value(metric: MetricSpec, snapshot: Mapping[str, float | None]) -> float | None:
    """The value of `metric` on one datapoint: its queries read from the snapshot, then its parts, then the
    expression."""
    values = {query.id: snapshot[METRIC_SOURCES[(query.namespace, query.metric_name)]] for query in metric.queries}
    return evaluate_spec(metric.expression, metric.parts, values)
