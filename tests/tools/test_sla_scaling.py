"""The SLA scaling policy core: the numbers derive_policy gives the construct, and the targets it must meet."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk_constructs import sla_scaling
from cdk_constructs.sla_scaling import Step, derive_policy
from stacks.config import WorkerConfig, load_worker
from tools.scaling_sim import engine, policies, traffic
from tools.scaling_sim.metricmath import evaluate

WORKER_FILE = Path(__file__).resolve().parents[2] / "config" / "workers" / "food-photo.yaml"


@pytest.fixture(scope="module")
def worker() -> WorkerConfig:
    return load_worker(WORKER_FILE)


def with_scaling(worker: WorkerConfig, **changes: object) -> WorkerConfig:
    return worker.model_copy(update={"scaling": worker.scaling.model_copy(update=changes)})


def test_target_is_what_a_task_clears_in_the_acceptable_latency(worker: WorkerConfig) -> None:
    policy = derive_policy(worker)
    # 120 s metric delay + 3 x 60 s datapoints + 240 s launch + 90 s pull + 30 s start
    assert policy.reaction_seconds == 660
    # 35% of 3600 s less the reaction time
    assert policy.acceptable_latency_seconds == 600
    (tracking,) = policy.target_tracking
    assert tracking.target_value == 110 * 600
    assert tracking.disable_scale_in is True
    assert tracking.scale_out_cooldown_seconds == 240 + 90 + 30
    assert (policy.min_capacity, policy.max_capacity, policy.metric_period_seconds) == (0, 20, 60)


def test_backlog_metric_divides_by_desired_tasks(worker: WorkerConfig) -> None:
    (tracking,) = derive_policy(worker).target_tracking
    names = {query.id: (query.namespace, query.metric_name) for query in tracking.metric.queries}
    assert names == {
        "visible": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        "inflight": ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible"),
        "tasks": ("ECS/ContainerInsights", "DesiredTaskCount"),
    }
    assert evaluate(tracking.metric.expression, {"visible": 900, "inflight": 100, "tasks": 4}) == 250
    # An empty fleet counts as one task, and a missing task datapoint as none.
    assert evaluate(tracking.metric.expression, {"visible": 900, "inflight": 100, "tasks": None}) == 1000


def test_age_guard_steps_are_fractions_of_the_sla(worker: WorkerConfig) -> None:
    guard = next(p for p in derive_policy(worker).step_policies if p.name == "age-guard")
    assert guard.metric.queries[0].metric_name == "ApproximateAgeOfOldestMessage"
    assert guard.threshold == 900
    assert (guard.evaluation_periods, guard.datapoints_to_alarm) == (2, 2)
    assert guard.adjustment_type == "ChangeInCapacity"
    assert guard.steps == (Step(900, 1800, 2), Step(1800, 2700, 5), Step(2700, None, 20))


def test_wake_sizes_the_fleet_for_the_backlog_found(worker: WorkerConfig) -> None:
    wake = next(p for p in derive_policy(worker).step_policies if p.name == "wake")
    assert (wake.threshold, wake.evaluation_periods, wake.datapoints_to_alarm) == (1, 1, 1)
    assert wake.adjustment_type == "ExactCapacity"
    assert [s.adjustment for s in wake.steps] == [1, 2, 4, 8, 16, 20]
    assert wake.steps[0].lower == 1
    # Contiguous: each step starts where the previous ends, the last is open.
    assert all(a.upper == b.lower for a, b in zip(wake.steps, wake.steps[1:], strict=False))
    assert wake.steps[-1].upper is None
    assert wake.steps[1].lower == 66_000
    # Only while no task runs.
    assert evaluate(wake.metric.expression, {"visible": 5, "tasks": 0}) == 5
    assert evaluate(wake.metric.expression, {"visible": 5, "tasks": 2}) == 0


def test_idle_scales_to_zero_after_the_idle_minutes(worker: WorkerConfig) -> None:
    idle = next(
        p for p in derive_policy(with_scaling(worker, scale_in_idle_minutes=25)).step_policies if p.name == "idle"
    )
    assert idle.comparison == "LessThanOrEqualToThreshold"
    assert idle.threshold == 0
    assert (idle.evaluation_periods, idle.datapoints_to_alarm) == (25, 25)
    assert idle.adjustment_type == "ExactCapacity"
    assert idle.steps == (Step(None, 0.0, 0),)
    assert idle.steps[0].contains(0, below_threshold=True)


def test_shrink_never_removes_the_last_task(worker: WorkerConfig) -> None:
    shrink = next(p for p in derive_policy(worker).step_policies if p.name == "shrink")
    assert shrink.adjustment_type == "PercentChangeInCapacity"
    assert shrink.min_adjustment_magnitude == 1
    # With one task the metric reads as the target, above the shrink threshold.
    assert evaluate(shrink.metric.expression, {"visible": 0, "inflight": 0, "tasks": 1}) == 66_000
    assert evaluate(shrink.metric.expression, {"visible": 0, "inflight": 0, "tasks": 3}) == 0
    assert shrink.threshold == 33_000


def test_no_wake_or_idle_policy_with_a_minimum_fleet(worker: WorkerConfig) -> None:
    policy = derive_policy(with_scaling(worker, min_tasks=2))
    assert [p.name for p in policy.step_policies] == ["age-guard", "shrink"]
    assert policy.min_capacity == 2


def test_short_sla_keeps_a_positive_target(worker: WorkerConfig) -> None:
    short = worker.model_copy(update={"sla_minutes": 10})
    policy = derive_policy(short)
    # 35% of 600 s is less than the reaction time: fall back to one metric period.
    assert policy.acceptable_latency_seconds == 60
    assert policy.target_tracking[0].target_value == 110 * 60


def test_every_deployed_expression_uses_only_its_queries(worker: WorkerConfig) -> None:
    policy = derive_policy(worker)
    for metric in [t.metric for t in policy.target_tracking] + [s.metric for s in policy.step_policies]:
        values = {query.id: 1.0 for query in metric.queries}
        assert evaluate(metric.expression, values) is not None
        assert metric.period_seconds == 60


def test_sla_module_does_not_import_the_cdk() -> None:
    source = Path(sla_scaling.__file__).read_text(encoding="utf-8")
    assert "aws_cdk" not in source


def test_deployed_policy_meets_the_targets_on_every_built_in_profile(worker: WorkerConfig) -> None:
    """The issue's benchmark: every photo within the SLA, and at most 1.2x the oracle's GPU-hours on steady/daily."""
    params = engine.Params.from_worker(worker)
    for name, make in traffic.PROFILES.items():
        profile = make()
        outcome = engine.simulate(policies.deployed(worker), profile.per_minute, params, name="deployed")
        assert outcome.over_sla == 0, name
        assert outcome.max_age_s < worker.sla_minutes * 60, name
        if name in ("steady", "daily"):
            bound = profile.total / worker.scaling.images_per_second_per_task / 3600
            assert outcome.gpu_hours <= 1.2 * bound, name
