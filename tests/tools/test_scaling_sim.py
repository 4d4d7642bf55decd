"""The scaling simulator on small cases with hand-checked answers, its command line and its link to the construct."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from cdk_constructs import sla_scaling
from cdk_constructs.sla_scaling import MetricSpec, ScalingPolicy, Step, StepPolicy, TargetTracking
from stacks.config import WorkerConfig, load_worker
from tools.scaling_sim import __main__ as cli
from tools.scaling_sim import engine, policies, traffic
from tools.scaling_sim.metricmath import MetricMathError, evaluate

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
VISIBLE = sla_scaling.VISIBLE
DESIRED = sla_scaling.DESIRED


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
    assert engine._adjust(shrink, -20, 12) == 10  # -2.4 -> -2
    assert engine._adjust(shrink, -20, 3) == 2  # -0.6 -> at least one


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


# --- scale-in and in-flight work ---------------------------------------------------------------------------------


def test_stopping_a_busy_task_finishes_its_batch_when_the_stop_timeout_allows() -> None:
    queue = engine.Queue()
    queue.add(0, 1000)
    fleet = engine.Fleet(PARAMS, desired=1)
    fleet.reconcile(0, queue)
    fleet.desired = 0
    fleet.reconcile(600, queue)  # the task has run since 360 s
    assert fleet.tasks == []
    assert queue.hidden == []
    assert queue.total == 1000


def test_a_batch_longer_than_the_stop_timeout_returns_after_the_visibility_timeout() -> None:
    slow = dataclasses.replace(PARAMS, images_per_second=0.1)  # a 10-photo batch takes 100 s
    slow = dataclasses.replace(slow, stop_timeout_seconds=30)
    queue = engine.Queue()
    queue.add(0, 1000)
    fleet = engine.Fleet(slow, desired=1)
    fleet.reconcile(0, queue)
    fleet.desired = 0
    fleet.reconcile(600, queue)
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


# --- oracle ------------------------------------------------------------------------------------------------------


def test_oracle_bound_and_tasks_needed_by_hand() -> None:
    # 6,000 photos in minute 0 (1,000 per tick), 100 per task per tick, 120 s SLA. With 4 tasks the last bucket
    # (50 s) finishes at 150 s; with 3 tasks at 200 s, 150 s late... over the SLA. So 4 tasks are needed.
    params = dataclasses.replace(PARAMS, sla_seconds=120)
    out = engine.oracle(minutes(6000), params, max_tasks=20)
    assert out.tasks_needed == 4
    assert out.gpu_hours == pytest.approx(6000 / 10 / 3600)
    assert out.over_sla == 0
    # Twenty always-ready tasks clear each tick's 1,000 photos in that tick.
    assert out.max_age_s == 0
    short = engine.oracle(minutes(6000), params, max_tasks=3)
    assert short.over_sla > 0


# --- metric math -------------------------------------------------------------------------------------------------


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
    out = cli.run_profile(worker, traffic.backfill(), ["deployed"])[0]
    assert out.peak_tasks == 3
    assert out.over_sla > 0


def test_quiet_night_reaches_zero_and_wakes_for_the_first_photo(worker: WorkerConfig) -> None:
    params = engine.Params.from_worker(worker)
    out = engine.simulate(policies.deployed(worker), traffic.quiet_night().per_minute, params)
    assert out.series is not None
    night = slice(3 * 360, 7 * 360)  # 03:00-07:00 in 10 s ticks
    assert out.series.desired[night].max() == 0
    photo = slice(7 * 360, 8 * 360)
    assert out.series.running[photo].max() >= 1
    assert out.over_sla == 0


# --- command line ------------------------------------------------------------------------------------------------


def test_json_lists_every_policy_and_the_oracle(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--profile", "burst", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["policy"] for row in rows] == ["age-step", "backlog-target", "deployed", "oracle"]
    for row in rows:
        assert row["profile"] == "burst"
        assert {"max_age_s", "p99_age_s", "over_sla", "gpu_hours", "cost_usd", "scale_events"} <= row.keys()
        assert isinstance(row["over_sla"], int)
        assert row["photos"] == 2_600_000
    assert rows[-1]["tasks_needed"] == 2


def test_traffic_csv_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "spike.csv"
    csv.write_text("minute,arrivals\n0,600\n3,1200\n\n", encoding="utf-8")
    png = tmp_path / "out.png"
    assert cli.main(["--traffic", str(csv), "--policy", "deployed", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "**spike**: spike.csv: 2 rows" in out
    assert "| deployed |" in out
    assert "| oracle (needs 1 task) |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
