"""The scaling simulator on small cases with hand-checked answers, its command line and its link to the construct."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cdk_constructs import sla_model, sla_scaling, sla_timing
from cdk_constructs.sla_model import HostScaling, MetricSpec, ScalingPolicy, Step, StepPolicy, TargetTracking
from stacks.config import WorkerConfig, load_worker
from tools.scaling_sim import __main__ as cli
from tools.scaling_sim import autoscaler, engine, policies, report, traffic
from tools.scaling_sim import oracle as host_oracle
from tools.scaling_sim.metricmath import MetricMathError, evaluate, evaluate_spec

WORKER_FILE = Path(__file__).resolve().parents[2] / "config" / "workers" / "food-photo.yaml"

# 10 photos/s per task, 10 s ticks, 2 min metric delay, 240 s boot + 90 s pull + 30 s start = 360 s to a task.
PARAMS = engine.Params(
    sla_seconds=3600,
    images_per_second=10,
    batch_size=10,
    stop_timeout_seconds=120,
    visibility_timeout_seconds=900,
    metric_period_seconds=60,
    metric_delay_seconds=120,
    instance_launch_seconds=240,
    image_pull_seconds=90,
    task_start_seconds=30,
    gpus_per_task=1,
    gpu_hourly_usd=2.0,
)
VISIBLE = sla_model.VISIBLE
INFLIGHT = sla_model.INFLIGHT
DESIRED = sla_model.DESIRED
GROUP = HostScaling(managed=False, min_hosts=0, max_hosts=10)


def step_on_visible(adjustment_type: str, adjustment: int, cooldown: int) -> ScalingPolicy:
    """One alarm: visible >= 1 for one datapoint; nothing ever scales in."""
    policy = StepPolicy(
        name="up",
        metric=MetricSpec("visible", (VISIBLE,), 60, "visible"),
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=1,
        datapoints_to_alarm=1,
        adjustment_type=adjustment_type,  # type: ignore[arg-type]
        steps=(Step(1, None, adjustment),),
        cooldown_seconds=cooldown,
    )
    return ScalingPolicy(0, 10, 60, 0, 0, (), (policy,))


def minutes(*counts: float) -> np.ndarray:
    return np.array(counts, dtype=np.float64)


@pytest.fixture(scope="module")
def worker() -> WorkerConfig:
    return load_worker(WORKER_FILE)


# --- hand-checked timing -----------------------------------------------------------------------------------------


def test_single_burst_waits_for_metric_alarm_launch_pull_and_start() -> None:
    # 600 photos in minute 0 (100 per tick). The datapoint taken at 60 s reaches CloudWatch at 180 s; the alarm
    # sets one task; its host boots by 420 s, the image is pulled by 510 s, the task works from 540 s and clears
    # 100 photos a tick: the photo from 0 s finishes at 550 s, the one from 50 s at 600 s.
    out = engine.simulate(step_on_visible("ExactCapacity", 1, 60), minutes(600), PARAMS, drain_minutes=14)
    assert out.series is not None
    assert out.series.desired[17] == 0
    assert out.series.desired[18] == 1
    assert out.series.running[53] == 0
    assert out.series.running[54] == 1
    assert out.max_age_s == 540
    assert out.p99_latency_s == 550
    assert out.over_sla == 0
    assert out.scale_events == 1
    # The host is billed from launch at 180 s to the end of the run at 900 s.
    assert out.gpu_hours == pytest.approx(720 / 3600)
    assert out.cost_usd == pytest.approx(2 * 720 / 3600)


@pytest.mark.parametrize("delay", [0, 120, 300])
def test_metric_delay_shifts_the_first_task_one_for_one(delay: int) -> None:
    params = dataclasses.replace(PARAMS, metric_delay_seconds=delay)
    out = engine.simulate(step_on_visible("ExactCapacity", 1, 60), minutes(600), params, drain_minutes=20)
    # First datapoint at 60 s + delay, then 360 s to a working task.
    assert out.max_age_s == 60 + delay + 360


def test_photos_over_the_sla_are_counted() -> None:
    params = dataclasses.replace(PARAMS, sla_seconds=300)
    out = engine.simulate(step_on_visible("ExactCapacity", 1, 60), minutes(600), params, drain_minutes=14)
    # Every photo waits 550 s (see the single burst case), all over a 300 s SLA.
    assert out.over_sla == 600


@pytest.mark.parametrize(("cooldown", "expected"), [(300, [1, 1, 2, 2, 3]), (60, [1, 2, 3, 4, 5])])
def test_cooldown_spaces_step_scale_outs(cooldown: int, expected: list[int]) -> None:
    # A backlog that never clears keeps the alarm in ALARM; it first fires at 180 s, then once a minute.
    out = engine.simulate(step_on_visible("ChangeInCapacity", 1, cooldown), minutes(1e9), PARAMS, drain_minutes=20)
    assert out.series is not None
    desired_each_minute = [int(out.series.desired[t // 10]) for t in (180, 240, 480, 540, 780)]
    if cooldown == 60:
        desired_each_minute = [int(out.series.desired[t // 10]) for t in (180, 240, 300, 360, 420)]
    assert desired_each_minute == expected


def test_target_tracking_counts_the_capacity_added_during_its_cooldown() -> None:
    tracking = TargetTracking(
        name="backlog",
        metric=sla_scaling.backlog_per_task_metric(60),
        target_value=100,
        scale_out_cooldown_seconds=300,
        scale_in_cooldown_seconds=300,
        disable_scale_in=True,
    )
    scaler = engine.AutoScaler(ScalingPolicy(0, 50, 60, 0, 0, (tracking,), ()))
    for visible in (300, 400, 500):
        scaler.observe({"visible": visible, "inflight": 0, "age": 0, "desired": 2, "running": 2})
    # ceil(2 tasks x 250 per task / 100)
    assert scaler.evaluate(0, 2) == 5
    # A later, staler-looking datapoint (still 2 tasks) sizes from the 2 before the scale-out, not from 5.
    scaler.observe({"visible": 600, "inflight": 0, "age": 0, "desired": 2, "running": 2})
    assert scaler.evaluate(60, 5) == 6
    # After the cooldown the same datapoint would compound: ceil(6 x 300 / 100).
    assert scaler.evaluate(400, 6) == 18


def test_percent_change_rounds_toward_zero_with_a_minimum_magnitude() -> None:
    shrink = StepPolicy("s", MetricSpec("visible", (VISIBLE,), 60, "v"), "LessThanOrEqualToThreshold", 0, 1, 1,
                        "PercentChangeInCapacity", (Step(None, 0, -20),), 0, min_adjustment_magnitude=1)  # fmt: skip
    assert autoscaler._adjust(shrink, -20, 12) == 10  # -2.4 -> -2
    assert autoscaler._adjust(shrink, -20, 3) == 2  # -0.6 -> at least one


def test_sqs_asleep_after_hours_of_silence_delays_the_wake() -> None:
    # Silence, then one photo at 1200 s. Awake: datapoint at 1260 s, seen at 1380 s, task at 1740 s: waits 540 s.
    # Asleep (no activity for 600 s here): no SQS datapoints until 1200 + 900 s, seen at 2220 s, task at 2580 s.
    per_minute = np.zeros(21)
    per_minute[20] = 1
    awake = engine.simulate(step_on_visible("ExactCapacity", 1, 60), per_minute, PARAMS, drain_minutes=30)
    asleep_params = dataclasses.replace(PARAMS, sqs_sleep_after_seconds=600)
    asleep = engine.simulate(step_on_visible("ExactCapacity", 1, 60), per_minute, asleep_params, drain_minutes=30)
    assert awake.max_age_s == 540
    assert asleep.max_age_s == 2580 - 1200


# --- scale-in, protection, instance types, spot -------------------------------------------------------------------


def test_a_task_holding_messages_is_protected_from_scale_in_until_the_queue_drains() -> None:
    queue = engine.Queue()
    queue.add(0, 1000)
    fleet = engine.Fleet(PARAMS, desired=2)
    fleet.reconcile(0, queue)
    fleet.desired = 0
    fleet.reconcile(600, queue)  # both tasks run since 360 s and hold messages
    assert len(fleet.tasks) == 2
    queue.take(995)  # 5 left: one batch, held by one task
    fleet.reconcile(610, queue)
    assert len(fleet.tasks) == 1
    queue.take(5)
    fleet.reconcile(620, queue)
    assert fleet.tasks == []
    assert queue.hidden == []


def test_scale_in_stops_tasks_not_yet_started_first() -> None:
    queue = engine.Queue()
    queue.add(0, 1000)
    fleet = engine.Fleet(PARAMS, desired=1)
    fleet.reconcile(0, queue)
    fleet.desired = 2
    fleet.reconcile(400, queue)  # a second host, booting
    fleet.desired = 1
    fleet.reconcile(410, queue)
    (task,) = fleet.tasks
    assert task.ready_at == 360


def test_hosts_follow_the_on_demand_base_and_share_and_are_the_first_type() -> None:
    params = dataclasses.replace(
        PARAMS, instance_rates=(10.0, 6.0), on_demand_base=1, on_demand_percentage_above_base=25
    )
    fleet = engine.Fleet(params, desired=5)
    fleet.reconcile(0, engine.Queue())
    # Base: on demand; above it 25% on demand: spot, spot, spot, on demand. Every one of the first (prioritized) type.
    assert [h.spot for h in fleet.hosts] == [False, True, True, True, False]
    assert [h.rate for h in fleet.hosts] == [10.0] * 5


def test_spot_hosts_take_the_types_in_turn_when_the_first_types_pools_are_short() -> None:
    params = dataclasses.replace(
        PARAMS,
        instance_rates=(10.0, 6.0),
        on_demand_base=1,
        on_demand_percentage_above_base=25,
        spot_types_in_turn=True,
    )
    fleet = engine.Fleet(params, desired=5)
    fleet.reconcile(0, engine.Queue())
    # On-demand hosts stay the first type; spot hosts alternate g5-like, g4dn-like.
    assert [h.rate for h in fleet.hosts] == [10.0, 10.0, 6.0, 10.0, 10.0]


def test_a_slower_instance_type_classifies_at_its_own_rate() -> None:
    # One spot host of the 5-a-second type: 600 photos take 120 s once the task runs at 540 s.
    slow = dataclasses.replace(PARAMS, instance_rates=(5.0,))
    out = engine.simulate(step_on_visible("ExactCapacity", 1, 60), minutes(600), slow, drain_minutes=14)
    assert out.p99_latency_s == pytest.approx(540 + 120 - 60 + 10, abs=10)
    assert out.over_sla == 0


def test_spot_notices_delay_photos_but_lose_none() -> None:
    # Every host is spot and gets a notice every 15 minutes on average: each one stops the task and a replacement
    # host starts from scratch, so photos wait longer than the 540 s of an uninterrupted run, but none is lost
    # (photos still queued at the end of the 90-minute drain would count as over the SLA).
    params = dataclasses.replace(PARAMS, on_demand_percentage_above_base=0, spot_interruptions_per_hour=4.0, seed=2)
    out = engine.simulate(step_on_visible("ExactCapacity", 1, 60), minutes(*[100] * 30), params, drain_minutes=90)
    assert out.interruptions == 11
    assert out.max_age_s > 540
    assert out.over_sla == 0


def test_interrupted_host_is_billed_two_minutes_then_gone() -> None:
    queue = engine.Queue()
    fleet = engine.Fleet(PARAMS, desired=1)
    fleet.reconcile(0, queue)
    (host,) = fleet.hosts
    host.spot, host.interrupt_at = True, 500.0
    fleet.interrupt_spot(500, queue)
    assert fleet.tasks == []
    fleet.reconcile(500, queue)  # the replacement goes to a new host
    assert len(fleet.hosts) == 2
    fleet.retire_idle_hosts(619)
    assert host in fleet.hosts
    fleet.retire_idle_hosts(620)
    assert host not in fleet.hosts


def test_a_batch_longer_than_the_stop_timeout_returns_after_the_visibility_timeout() -> None:
    slow = dataclasses.replace(PARAMS, images_per_second=0.1, stop_timeout_seconds=30)  # 10 photos take 100 s
    queue = engine.Queue()
    queue.add(0, 1000)
    fleet = engine.Fleet(slow, desired=1)
    fleet.reconcile(0, queue)
    fleet.hosts[0].spot, fleet.hosts[0].interrupt_at = True, 600.0
    fleet.interrupt_spot(600, queue)
    assert queue.total == 990
    assert queue.hidden_total == 10
    # Hidden messages still count for the age of the oldest message.
    assert queue.oldest_age(700) == 700
    queue.release(1499)
    assert queue.total == 990
    queue.release(1500)
    assert queue.total == 1000
    assert queue.take(10) == [(0, 10)]


def test_new_task_reuses_an_idle_host_without_a_pull() -> None:
    queue = engine.Queue()
    fleet = engine.Fleet(PARAMS, desired=1)
    fleet.reconcile(0, queue)
    fleet.desired = 0
    fleet.reconcile(600, queue)
    fleet.desired = 1
    fleet.reconcile(700, queue)
    assert len(fleet.hosts) == 1
    assert fleet.tasks[0].ready_at == 700 + 30
    fleet.desired = 0
    fleet.reconcile(800, queue)
    fleet.retire_idle_hosts(800 + engine.HOST_IDLE_SECONDS - 10)
    assert len(fleet.hosts) == 1
    fleet.retire_idle_hosts(800 + engine.HOST_IDLE_SECONDS)
    assert fleet.hosts == []


# --- the host group without managed scaling -----------------------------------------------------------------------


def wake_and_release(host_idle_datapoints: int = 1) -> ScalingPolicy:
    """One task and one host on the first visible photo (one alarm, both actions), none of either once a
    datapoint shows nothing visible or in flight."""
    up = StepPolicy("up", MetricSpec("IF(FILL(tasks, 0) < 1, visible, 0)", (VISIBLE, DESIRED), 60, "v"),
                    "GreaterThanOrEqualToThreshold", 1, 1, 1, "ExactCapacity", (Step(1, None, 1),), 60,
                    host_steps=(Step(1, None, 1),))  # fmt: skip
    idle = StepPolicy("idle", MetricSpec("visible + inflight", (VISIBLE, INFLIGHT), 60, "q"),
                      "LessThanOrEqualToThreshold", 0, host_idle_datapoints, host_idle_datapoints, "ExactCapacity",
                      (Step(None, 0, 0),), 60, host_steps=(Step(None, 0, 0),))  # fmt: skip
    return ScalingPolicy(0, 10, 60, 0, 0, (), (up, idle), GROUP)


def test_the_host_starts_with_the_task_and_goes_a_release_after_the_queue_empties() -> None:
    # As the single burst with managed scaling: the alarm at 180 s sets one task and one host, the task works from
    # 540 s and the last photo is done at 600 s. The datapoint at 600 s still shows a batch in hand (the tick before
    # finished photos); the one at 660 s shows an empty queue, reaches CloudWatch at 780 s, and the same alarm sets
    # no task and no host: the host is billed until 780 + HOST_RELEASE_SECONDS, not HOST_IDLE_SECONDS after 600 s.
    out = engine.simulate(wake_and_release(), minutes(600), PARAMS, drain_minutes=30)
    assert out.series is not None
    assert out.max_age_s == 540
    assert out.over_sla == 0
    assert out.series.hosts[17] == 0
    assert out.series.hosts[18] == 1
    assert out.series.desired[77] == 1
    assert out.series.desired[78] == 0
    assert out.gpu_hours == pytest.approx((780 + engine.HOST_RELEASE_SECONDS - 180) / 3600)
    managed = dataclasses.replace(wake_and_release(), hosts=sla_model.MANAGED_HOSTS)
    held = engine.simulate(managed, minutes(600), PARAMS, drain_minutes=30)
    assert held.gpu_hours == pytest.approx((780 + engine.HOST_IDLE_SECONDS - 180) / 3600)


def released_by_the_worker(caught_up: int = 0, slow: int = 0) -> ScalingPolicy:
    rule = sla_model.WorkerRelease(
        empty_wait_seconds=20, caught_up_messages=caught_up, max_age_seconds=120, slow_arrivals_per_minute=slow
    )
    return dataclasses.replace(wake_and_release(), release=rule)


def test_the_workers_own_release_sends_the_fleet_to_zero_a_long_poll_after_the_queue_empties() -> None:
    # As above, the last photo done at 600 s; the worker's next long poll returns nothing until 620 s, the queue
    # reports nothing left, and service and group go to zero then, not at 780 s when CloudWatch shows it.
    out = engine.simulate(released_by_the_worker(), minutes(600), PARAMS, drain_minutes=30)
    assert out.series is not None
    assert out.over_sla == 0
    assert out.series.desired[61] == 1
    assert out.series.desired[62] == 0
    assert out.gpu_hours == pytest.approx((620 + engine.HOST_RELEASE_SECONDS - 180) / 3600)


def test_a_fleet_caught_up_with_a_trickle_goes_back_to_zero_at_once() -> None:
    # The burst, then 6 photos a minute: the queue never stays empty for a long poll, but once the task has taken
    # the burst and a minute of trickle (6 photos) it holds under a batch, the oldest is young and it took fewer than
    # 10 in the last minute: it lets the fleet go (this test policy wakes again on the next visible photo, so it
    # cycles). Without the rule only the idle alarm would, and it never sees an empty queue here.
    trickle = minutes(600, *([6.0] * 20))
    kept = engine.simulate(released_by_the_worker(), trickle, PARAMS, drain_minutes=0)
    released = engine.simulate(released_by_the_worker(caught_up=64, slow=10), trickle, PARAMS, drain_minutes=0)
    too_busy = engine.simulate(released_by_the_worker(caught_up=64, slow=6), trickle, PARAMS, drain_minutes=0)
    assert kept.series is not None
    assert released.series is not None
    first_task = int(np.argmax(kept.series.desired > 0))
    assert (kept.series.desired[first_task:] == 1).all()
    assert (released.series.desired[first_task:] == 0).any()
    assert released.over_sla == 0
    assert too_busy.zero_minutes == kept.zero_minutes  # 6 a minute is not fewer than 6


def test_a_task_waits_for_a_host_of_the_group() -> None:
    queue = engine.Queue()
    fleet = engine.Fleet(PARAMS, desired=1, hosts=GROUP)
    fleet.reconcile(0, queue)
    (task,) = fleet.tasks
    assert fleet.hosts == []  # nothing launches a host but the group (PROVISIONING)
    assert task.host is None
    assert task.ready_at == math.inf
    fleet.group_desired = 1
    fleet.reconcile(100, queue)
    # Booted at 340 s, pull and start: 460 s.
    assert task.host is fleet.hosts[0]
    assert task.ready_at == 100 + 240 + 90 + 30


def test_a_group_scale_in_takes_a_busy_host_first_and_its_task_moves_to_the_free_one() -> None:
    queue = engine.Queue()
    queue.add(0, 1000)
    fleet = engine.Fleet(PARAMS, desired=1, hosts=dataclasses.replace(GROUP, min_hosts=2))
    fleet.reconcile(0, queue)
    busy, free = fleet.hosts
    assert busy.task is not None
    assert free.task is None
    fleet.group_desired = 1
    fleet.reconcile(600, queue)
    # The termination policy knows nothing of tasks: the worst case, the busy host goes (billed until it drains).
    assert fleet.live_hosts() == [free]
    assert busy.gone_at == 600 + engine.HOST_RELEASE_SECONDS
    (task,) = fleet.tasks
    assert task.host is free
    assert task.ready_at == 600 + 90 + 30  # the free host never pulled the image
    fleet.retire_idle_hosts(600 + engine.HOST_RELEASE_SECONDS)
    assert fleet.hosts == [free]


def test_the_group_takes_the_largest_capacity_its_alarms_ask_for_within_its_limits() -> None:
    def always(name: str, hosts: int) -> StepPolicy:
        return StepPolicy(name, MetricSpec("visible", (VISIBLE,), 60, "v"), "GreaterThanOrEqualToThreshold", 0, 1,
                          1, "ExactCapacity", (Step(0, None, hosts),), 0)  # fmt: skip

    group = HostScaling(managed=False, min_hosts=1, max_hosts=4, policies=(always("a", 2), always("b", 3)))
    scaler = engine.AutoScaler(ScalingPolicy(0, 10, 60, 0, 0, (), (), group))
    assert scaler.evaluate_hosts(7) == 7  # no datapoint yet: no alarm in ALARM
    scaler.observe({"visible": 5})
    assert scaler.evaluate_hosts(7) == 3
    big = HostScaling(managed=False, min_hosts=1, max_hosts=4, policies=(always("a", 9),))
    scaler = engine.AutoScaler(ScalingPolicy(0, 10, 60, 0, 0, (), (), big))
    scaler.observe({"visible": 5})
    assert scaler.evaluate_hosts(2) == 4


# --- host-aware oracle -------------------------------------------------------------------------------------------


def solve(trace: np.ndarray, *, integer: bool = False) -> host_oracle.OracleResult:
    """110 photos/s per host, 360 s from launch to classifying, 60 s to release, 60-minute SLA, 20 hosts at most."""
    return host_oracle.solve(
        trace,
        sla_seconds=3600,
        images_per_second=110.0,
        startup_seconds=360,
        max_tasks=20,
        release_seconds=60,
        integer=integer,
    )


@pytest.mark.parametrize("integer", [False, True])
def test_oracle_one_photo_costs_one_host_start(integer: bool) -> None:
    # One host: billed 360 s before it is ready, 1/110 s of work, then 60 s while the group lets it go.
    result = solve(minutes(1), integer=integer)
    assert result.bound_host_seconds == pytest.approx(360 + 1 / 110 + 60)
    assert result.runs == pytest.approx(1)


@pytest.mark.parametrize("integer", [False, True])
def test_oracle_one_burst_needs_two_whole_hosts(integer: bool) -> None:
    # 660,000 photos at minute 0 are 6,000 host-seconds of work. A host is ready from minute 6 and the SLA ends
    # with minute 60: 55 minutes (3,300 s) each, so two hosts: 2 x (360 s + 60 s) + 6,000 s.
    result = solve(minutes(660_000), integer=integer)
    assert result.bound_host_seconds == pytest.approx(2 * (360 + 60) + 6000)
    assert result.runs == pytest.approx(2)


@pytest.mark.parametrize("integer", [False, True])
def test_oracle_two_bursts_an_sla_apart_share_one_host(integer: bool) -> None:
    # 66,000 photos at minute 0 and again at minute 60 (600 s of work each). One host started so that it clears the
    # first burst just before its deadline is still there for the second: 420 s + 1,200 s, not 2 x 420 + 1,200.
    trace = np.zeros(61)
    trace[0] = trace[60] = 66_000
    result = solve(trace, integer=integer)
    assert result.bound_host_seconds == pytest.approx(360 + 60 + 1200)
    assert result.runs == pytest.approx(1)


def test_oracle_reports_traffic_no_fleet_can_serve_in_time() -> None:
    # 9 million photos at once: 81,818 host-seconds in the 55 ready minutes needs 25 hosts, more than 20.
    result = solve(minutes(9_000_000))
    assert not result.feasible
    assert math.isinf(result.bound_host_seconds)


def test_oracle_is_below_every_policy_and_above_the_fractional_bound(worker: WorkerConfig) -> None:
    params = engine.Params.from_worker(worker)
    profile = traffic.quiet_night()
    bound = engine.oracle(profile.per_minute, params, worker.scaling.max_tasks)
    fractional = profile.total / max(params.rates) / 3600
    assert bound.gpu_hours > fractional
    for name in ("deployed", "immediate"):
        out = engine.simulate(policies.build(name, worker), profile.per_minute, params)
        assert out.gpu_hours >= bound.gpu_hours, name


def test_tasks_needed_by_hand() -> None:
    # 6,000 photos in minute 0 (1,000 per tick), 100 per task per tick, 120 s SLA. With 4 tasks the last bucket
    # (50 s) finishes at 150 s; with 3 tasks at 200 s, over the SLA. So 4 always-ready tasks are needed.
    params = dataclasses.replace(PARAMS, sla_seconds=120)
    assert engine.tasks_needed(minutes(6000), params, drain_ticks=24) == 4


# --- metric math -------------------------------------------------------------------------------------------------


def test_metric_math_ceil_parts_and_names() -> None:
    assert evaluate("CEIL(a / 2)", {"a": 5}) == 3
    assert evaluate("CEIL(a)", {"a": None}) is None
    assert evaluate_spec("need * 2", (("sum", "a + b"), ("need", "IF(sum > 3, sum, 3)")), {"a": 1, "b": 1}) == 6
    assert sla_model.referenced_ids("IF(FILL(tasks, 0) < 1, CEIL(x / 2), y)") == {"tasks", "x", "y"}


def test_metric_math_evaluates_if_lazily_and_fill() -> None:
    assert evaluate("(a + b) / IF(t < 1, 1, t)", {"a": 3, "b": 1, "t": 0}) == 4
    assert evaluate("FILL(t, 0) > 1", {"t": None}) == 0
    assert evaluate("a + b", {"a": None, "b": 1}) is None
    assert evaluate("a / b", {"a": 1, "b": 0}) is None
    with pytest.raises(MetricMathError, match="unsupported metric math function SUM"):
        evaluate("SUM(a)", {"a": 1})
    with pytest.raises(MetricMathError, match="unknown metric id 'x'"):
        evaluate("x", {"a": 1})


# --- the deployed policy comes from the construct's code path ----------------------------------------------------


def test_deployed_policy_is_what_derive_policy_returns(worker: WorkerConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    assert policies.build("deployed", worker) == sla_scaling.derive_policy(worker)
    real = sla_scaling.derive_policy

    def capped(w: WorkerConfig) -> ScalingPolicy:
        return dataclasses.replace(real(w), max_capacity=3)

    monkeypatch.setattr(sla_scaling, "derive_policy", capped)
    assert policies.build("deployed", worker).max_capacity == 3
    run = cli.run_profile(worker, traffic.backfill(), ["deployed"], sensitivity=False)
    assert run.outcomes[0].peak_tasks == 3
    assert run.outcomes[0].over_sla > 0


def test_immediate_is_the_deployed_policy_with_wake_immediate(worker: WorkerConfig) -> None:
    immediate = worker.model_copy(update={"scaling": worker.scaling.model_copy(update={"wake": "immediate"})})
    assert policies.build("immediate", worker) == sla_scaling.derive_policy(immediate)


def test_quiet_night_reaches_zero_and_the_lone_photo_waits_for_its_slack(worker: WorkerConfig) -> None:
    params = engine.Params.from_worker(worker)
    out = engine.simulate(policies.deployed(worker), traffic.quiet_night().per_minute, params)
    assert out.series is not None
    night = slice(3 * 360, 7 * 360)  # 03:00-07:00 in 10 s ticks
    assert out.series.desired[night].max() == 0
    assert out.series.hosts[night].max() == 0
    # The 07:00 photo wakes the fleet only once its age (nothing to drain behind it) reaches the wake deadline
    # (42 min), not at once; one host serves it and goes about 4 minutes after it is classified.
    wake = 7 * 360 + sla_timing.wake_deadline_seconds(worker) // 10
    assert out.series.desired[7 * 360 : wake].max() == 0
    assert out.series.running[wake : 8 * 360].max() >= 1
    assert out.series.hosts[7 * 360 : 8 * 360].sum() * 10 <= (6 + 6) * 60
    assert out.over_sla == 0


# --- command line and the gate -----------------------------------------------------------------------------------


def test_json_lists_every_policy_the_oracle_and_the_sensitivity_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--profile", "burst", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    nominal = [row for row in rows if row["case"] == "nominal"]
    assert [row["policy"] for row in nominal] == ["deployed", "immediate", "age-step", "backlog-target", "oracle"]
    cases = {(row["policy"], row["case"]) for row in rows if row["case"] != "nominal"}
    assert cases == {
        (policy, case)
        for policy in ("deployed", "immediate")
        for case in ("2x launch", "2x pull", "300 s metric delay", "spot on the fallback type", "0.6x throughput")
    }
    for row in rows:
        assert row["profile"] == "burst"
        assert {"max_age_s", "over_sla", "gpu_hours", "x_oracle", "scale_events"} <= row.keys()
        assert row["photos"] == 2_600_000
    assert nominal[-1]["tasks_needed"] == 2
    assert nominal[-1]["max_age_s"] is None  # the oracle bounds GPU-hours, not ages
    assert nominal[-1]["x_oracle"] == 1.0
    assert all(row["x_oracle"] >= 1.0 for row in rows)


def test_traffic_csv_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "spike.csv"
    csv.write_text("minute,arrivals\n0,600\n3,1200\n\n", encoding="utf-8")
    png = tmp_path / "out.png"
    assert cli.main(["--traffic", str(csv), "--policy", "deployed", "--no-sensitivity", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "**spike**: spike.csv: 2 rows" in out
    assert "| deployed | 0 |" in out
    assert "| oracle (lower bound, needs 1 always-ready) |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_fails_and_names_a_profile_that_misses_the_sla(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 12 million photos in 10 minutes onto an idle service: more than 26 tasks can classify within the hour.
    csv = tmp_path / "backfill-12m.csv"
    csv.write_text("".join(f"{minute},1200000\n" for minute in range(10)), encoding="utf-8")
    code = cli.main(["--traffic", str(csv), "--policy", "deployed", "--no-sensitivity"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("SLA missed: backfill-12m (deployed, nominal: ")
    assert captured.err.count("\n") == 1
    assert "| oracle: no schedule within max_tasks meets the SLA |" in captured.out


def test_gate_counts_sensitivity_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 6 million photos in 10 minutes: 26 tasks clear them within the hour at nominal speed, not at 0.6x.
    csv = tmp_path / "edge.csv"
    csv.write_text("".join(f"{minute},600000\n" for minute in range(10)), encoding="utf-8")
    code = cli.main(["--traffic", str(csv), "--policy", "deployed"])
    err = capsys.readouterr().err
    assert code == 1
    assert "edge (deployed, nominal" not in err
    assert err.startswith("SLA missed: edge (deployed, 0.6x throughput: ")


def test_write_docs_takes_no_custom_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--write-docs", "--profile", "burst"]) == 2
    assert capsys.readouterr().err == "option error: --write-docs runs the default profiles, policies and worker only\n"


def test_docs_tables_and_plot_are_fresh() -> None:
    """docs/scaling.md records the fingerprint of the simulator's inputs and of the plot it generated; any change to
    the simulator, the policy or the worker YAML needs `make simulate` to regenerate both."""
    block = report.between_markers(cli.DOCS.read_text(encoding="utf-8"))
    expected = f"<!-- inputs {cli.fingerprint(cli.INPUTS)}, plot {cli.fingerprint([cli.PLOT])} -->"
    assert block.splitlines()[0] == expected, "docs/scaling.md is stale: run `make simulate`"


def test_random_days_are_seeded_and_varied() -> None:
    days = [traffic.random_day(seed) for seed in range(1, 6)]
    assert np.array_equal(traffic.random_day(3).per_minute, days[2].per_minute)
    assert [day.name for day in days] == [f"random-{seed}" for seed in range(1, 6)]
    for day in days:
        assert len(day.per_minute) == 24 * 60
        assert (day.per_minute >= 0).all()
        assert np.array_equal(day.per_minute, np.round(day.per_minute))  # whole photos
    totals = sorted(day.total for day in days)
    assert totals[0] < 1e6 < 2e7 < totals[-1]  # some days a fraction of one host's day, some ten hosts' worth
    assert any((day.per_minute[: 8 * 60] == 0).sum() >= 60 for day in days)  # a silent night among them


def test_read_csv_fills_missing_minutes(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("2,5\n0,1.5\n", encoding="utf-8")
    assert traffic.read_csv(csv).per_minute.tolist() == [1.5, 0.0, 5.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("minute,arrivals\n0,10\n1,ten\n", "t.csv:3: bad row '1,ten': expected minute,arrivals"),
        ("0,10\n-1,5\n", "t.csv:2: bad row '-1,5'"),
        ("0,10,3\n", "t.csv:1: bad row '0,10,3'"),
        ("0,10\n0,5\n", "t.csv:2: minute 0 appears twice"),
        ("minute,arrivals\n", "t.csv: no minute,arrivals rows"),
    ],
)
def test_bad_traffic_file_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(text, encoding="utf-8")
    assert cli.main(["--traffic", str(csv)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("traffic error: ")
    assert err.count("\n") == 1


def test_bad_worker_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text(
        WORKER_FILE.read_text(encoding="utf-8").replace("sla_minutes: 60", "sla_minutes: 1"), encoding="utf-8"
    )
    assert cli.main(["--worker", str(bad), "--profile", "burst"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ")
    assert "sla_minutes: 1:" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    g4dn.xlarge: 66 ",
            "    p5.48xlarge: 66 ",
            "scaling.images_per_second_by_instance_type.p5.48xlarge: 'p5.48xlarge': must be one of "
            "capacity.instance_types (g5.xlarge, g4dn.xlarge)",
        ),
        (
            "    g4dn.xlarge: 66 ",
            "    g4dn.xlarge: 0 ",
            "scaling.images_per_second_by_instance_type.g4dn.xlarge: 0: Input should be greater than 0",
        ),
        ("  wake: sla ", "  wake: lazy ", "scaling.wake: 'lazy': Input should be 'sla' or 'immediate'"),
        (
            "spot_interruptions_per_hour: 0.02",
            "spot_interruptions_per_hour: 2",
            "simulation.spot_interruptions_per_hour: 2: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_scaling_fields_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    text = WORKER_FILE.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "w.yaml"
    bad.write_text(text.replace(old, new), encoding="utf-8")
    assert cli.main(["--worker", str(bad), "--profile", "burst", "--no-sensitivity"]) == 2
    err = capsys.readouterr().err
    assert err == f"config error: {bad}: {message}\n"
