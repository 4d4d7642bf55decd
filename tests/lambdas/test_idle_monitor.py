"""Idle monitor: pure decisions, then the handler against moto (EC2 + CloudWatch) and the local Slack server."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambdas.idle_monitor import handler as idle_handler
from lambdas.idle_monitor.logic import (
    GPU_METRIC_NAME,
    Activity,
    Instance,
    RosterEntry,
    Settings,
    Usage,
    assess,
    classify,
    group_by_owner,
    in_scope,
    owner_message,
    parse_keep_until,
    parse_settings,
    tag_changes,
)
from tests.conftest import SlackServer, client
from tests.lambdas.conftest import FakeContext

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ROSTER = [
    {"name": "alice", "slack_user_id": "UALICE", "instance_type": "g5.xlarge"},
    {"name": "bob", "slack_user_id": "UBOB", "instance_type": "g4dn.xlarge"},
]
PRICES = {"g5.xlarge": 1.006, "g4dn.xlarge": 0.526}
SETTINGS = Settings(
    roster={e["name"]: RosterEntry(**e) for e in ROSTER},
    prices=PRICES,
    slack_secret_arn="arn:secret",
    auto_stop_after_checks=2,
)
IDLE = Usage(gpu=(0.0, 1.5, 0.0), cpu=(1.0, 2.0, 0.5))


def managed(owner: str = "alice", instance_type: str = "g5.xlarge", **tags: str) -> Instance:
    return Instance(
        instance_id=f"i-{owner}",
        instance_type=instance_type,
        launch_time=NOW - timedelta(hours=10),
        tags={"Owner": owner, "SlackUserId": f"U{owner.upper()}", "mlbase:managed": "true", "Name": owner} | tags,
    )


# ---------------------------------------------------------------- pure decisions


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (Usage(gpu=(0.0, 4.9), cpu=(0.0, 4.9)), (Activity.IDLE, 1)),
        (Usage(gpu=(0.0, 5.0), cpu=(0.0,)), (Activity.BUSY, 2)),
        (Usage(gpu=(0.0,), cpu=(60.0,)), (Activity.BUSY, 2)),
        (Usage(gpu=(), cpu=(0.0,)), (Activity.UNKNOWN, 3)),
        (Usage(gpu=(), cpu=(90.0,)), (Activity.UNKNOWN, 3)),
        (Usage(gpu=(0.0,), cpu=()), (Activity.UNKNOWN, 4)),
        (Usage(gpu=(30.0,), cpu=()), (Activity.BUSY, 2)),
    ],
)
def test_classify(usage: Usage, expected: tuple[Activity, int]) -> None:
    assert classify(usage, 5.0, 5.0) == expected


@pytest.mark.parametrize(
    ("raw", "valid", "problem"),
    [
        ("2026-11-27T18:00:00Z", True, None),
        ("2026-11-27T21:00:00+09:00", False, "in the past"),
        ("2026-11-28T10:00", True, None),
        ("2026-11-27T11:00:00Z", False, "in the past"),
        ("2027-01-01T00:00:00Z", False, "more than 168 h ahead"),
        ("next friday", False, "not an ISO 8601 time"),
        ("", False, None),
        (None, False, None),
    ],
)
def test_parse_keep_until(raw: str | None, valid: bool, problem: str | None) -> None:
    keep = parse_keep_until(raw, NOW, 168)
    assert (keep.valid, keep.problem) == (valid, problem)


def test_first_idle_check_counts_the_lookback_window_and_costs_it() -> None:
    report = assess(managed(), IDLE, SETTINGS, NOW)
    assert (report.activity, report.scenario, report.idle_checks, report.stop) == (Activity.IDLE, 1, 1, False)
    assert report.idle_since == NOW - timedelta(hours=3)
    assert report.hours_idle == 3.0
    assert report.idle_cost == 3.02  # 3 h x 1.006
    assert (report.hours_running, report.running_cost) == (10.0, 10.06)
    assert tag_changes(report) == ({"mlbase:idle-checks": "1", "mlbase:idle-since": "2026-11-27T09:00:00Z"}, [])


def test_idle_window_starts_at_launch_for_a_young_instance() -> None:
    young = Instance("i-young", "g5.xlarge", NOW - timedelta(minutes=90), managed().tags)
    assert assess(young, IDLE, SETTINGS, NOW).hours_idle == 1.5


def test_consecutive_idle_checks_keep_the_earlier_start() -> None:
    instance = managed(**{"mlbase:idle-checks": "1", "mlbase:idle-since": "2026-11-27T03:00:00Z"})
    report = assess(instance, IDLE, SETTINGS, NOW)
    assert report.idle_checks == 2
    assert report.hours_idle == 9.0
    assert report.idle_cost == 9.05


def test_auto_stop_after_n_checks_resets_the_count() -> None:
    report = assess(managed(**{"mlbase:idle-checks": "1"}), IDLE, SETTINGS, NOW)
    assert (report.stop, report.scenario) == (True, 5)
    assert tag_changes(report) == ({}, ["mlbase:idle-checks"])


def test_valid_keep_until_prevents_the_stop() -> None:
    report = assess(managed(**{"mlbase:idle-checks": "5", "keep-until": "2026-11-27T20:00:00Z"}), IDLE, SETTINGS, NOW)
    assert (report.stop, report.scenario, report.idle_checks) == (False, 6, 6)


def test_invalid_keep_until_is_ignored_and_said_so() -> None:
    report = assess(managed(**{"mlbase:idle-checks": "5", "keep-until": "2026-01-01T00:00:00Z"}), IDLE, SETTINGS, NOW)
    assert (report.stop, report.scenario) == (True, 7)
    assert "keep-until tag `2026-01-01T00:00:00Z` ignored: in the past." in owner_message("U", [report], 3)


def test_auto_stop_disabled_never_stops() -> None:
    settings = Settings(roster={}, prices={}, slack_secret_arn="x", auto_stop_after_checks=0)
    assert not assess(managed(**{"mlbase:idle-checks": "99"}), IDLE, settings, NOW).stop


def test_unknown_is_never_counted_nor_stopped() -> None:
    report = assess(managed(**{"mlbase:idle-checks": "7"}), Usage(cpu=(0.0,)), SETTINGS, NOW)
    assert (report.activity, report.idle_checks, report.stop) == (Activity.UNKNOWN, 0, False)
    assert tag_changes(report) == ({}, ["mlbase:idle-checks"])


def test_unmanaged_gpu_instance_is_reported_but_never_stopped() -> None:
    stranger = Instance("i-x", "p4d.24xlarge", NOW - timedelta(hours=48), {"mlbase:idle-checks": "9"})
    report = assess(stranger, IDLE, SETTINGS, NOW)
    assert (report.scenario, report.stop, report.owner, report.slack_user_id) == (8, False, None, None)
    assert report.hourly_price is None
    assert "price unknown while idle" in owner_message(None, [report], 3)


def test_scope_is_managed_or_gpu_family() -> None:
    assert in_scope(Instance("i-1", "t3.micro", NOW, {"mlbase:managed": "true"}))
    assert in_scope(Instance("i-2", "g6e.xlarge", NOW, {}))
    assert in_scope(Instance("i-3", "p5.48xlarge", NOW, {}))
    assert not in_scope(Instance("i-4", "m6g.large", NOW, {}))


def test_roster_wins_over_a_stale_slack_tag() -> None:
    report = assess(managed(SlackUserId="UOLD"), IDLE, SETTINGS, NOW)
    assert report.slack_user_id == "UALICE"


def test_messages_group_by_owner_and_skip_busy() -> None:
    busy = assess(managed("bob", "g4dn.xlarge"), Usage(gpu=(99.0,), cpu=(1.0,)), SETTINGS, NOW)
    reports = [assess(managed("alice"), IDLE, SETTINGS, NOW), busy]
    assert list(group_by_owner(reports)) == ["UALICE"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MLBASE_SLACK_SECRET_ARN must be set"),
        ({"MLBASE_ROSTER": "{}"}, "MLBASE_ROSTER must be a JSON list"),
        ({"MLBASE_ROSTER": '[{"name": "a"}]'}, r"MLBASE_ROSTER\[0\] needs non-empty strings"),
        ({"MLBASE_ROSTER": "nope"}, "MLBASE_ROSTER is not JSON"),
        ({"MLBASE_PRICES": '{"g5.xlarge": "1"}'}, r"MLBASE_PRICES\['g5.xlarge'\] must be a non-negative number"),
        ({"MLBASE_GPU_IDLE_PERCENT": "abc"}, "MLBASE_GPU_IDLE_PERCENT must be a number, got 'abc'"),
        ({"MLBASE_AUTO_STOP_AFTER_CHECKS": "1.5"}, "MLBASE_AUTO_STOP_AFTER_CHECKS must be a whole number"),
        ({"MLBASE_LOOKBACK_HOURS": "0"}, "MLBASE_LOOKBACK_HOURS must be a number between 0.25 and 336"),
    ],
)
def test_bad_environment_is_refused(env: dict[str, str], message: str) -> None:
    base = {} if not env else {"MLBASE_SLACK_SECRET_ARN": "arn:x"}
    with pytest.raises(ValueError, match=message):
        parse_settings(base | env)


def test_defaults() -> None:
    parsed = parse_settings({"MLBASE_SLACK_SECRET_ARN": "arn:x"})
    assert (parsed.gpu_idle_percent, parsed.cpu_idle_percent, parsed.lookback_hours) == (5.0, 5.0, 3.0)
    assert (parsed.auto_stop_after_checks, parsed.gpu_namespace) == (0, "CWAgent")


def test_gpu_metric_matches_the_cloudwatch_agent_config_in_packer() -> None:
    config_path = Path(__file__).resolve().parents[2] / "packer" / "files" / "cloudwatch-agent.json"
    metrics = json.loads(config_path.read_text(encoding="utf-8"))["metrics"]
    assert metrics["namespace"] == parse_settings({"MLBASE_SLACK_SECRET_ARN": "x"}).gpu_namespace
    assert GPU_METRIC_NAME == "nvidia_smi_" + "utilization_gpu"
    assert "utilization_gpu" in metrics["metrics_collected"]["nvidia_gpu"]["measurement"]


# ---------------------------------------------------------------- handler against moto + local Slack


@pytest.fixture
def monitor(aws: str, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackServer]:
    """Environment of a deployed monitor, a bot-token Slack secret in moto, and fresh cached settings."""
    secret = client("secretsmanager", aws).create_secret(
        Name="slack", SecretString=json.dumps({"bot_token": "xoxb-test", "channel": "CWORK"})
    )
    monkeypatch.setenv("MLBASE_SLACK_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("MLBASE_SLACK_API_BASE", slack_server.url)
    monkeypatch.setenv("MLBASE_ROSTER", json.dumps(ROSTER))
    monkeypatch.setenv("MLBASE_PRICES", json.dumps(PRICES))
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "0")
    idle_handler.settings.cache_clear()
    yield slack_server
    idle_handler.settings.cache_clear()


@functools.cache
def any_image(endpoint: str) -> str:
    """One of moto's built-in AMIs; they survive resets, and listing them costs seconds, so once per session."""
    image_id: str = client("ec2", endpoint).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return image_id


def launch(endpoint: str, instance_type: str = "g5.xlarge", tags: dict[str, str] | None = None) -> str:
    ec2 = client("ec2", endpoint)
    image = any_image(endpoint)
    spec: dict[str, Any] = {"ImageId": image, "InstanceType": instance_type, "MinCount": 1, "MaxCount": 1}
    if tags:
        spec["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    instance_id: str = ec2.run_instances(**spec)["Instances"][0]["InstanceId"]
    return instance_id


def owned_by(owner: str, **extra: str) -> dict[str, str]:
    return {"Owner": owner, "SlackUserId": f"U{owner.upper()}", "mlbase:managed": "true", "Name": f"{owner}-ws"} | extra


def put_usage(endpoint: str, instance_id: str, gpu: Sequence[float], cpu: Sequence[float]) -> None:
    """Datapoints 10 minutes apart ending 5 minutes ago, inside the 3-hour look-back."""
    now = datetime.now(UTC)
    cloudwatch = client("cloudwatch", endpoint)
    dimensions = [{"Name": "InstanceId", "Value": instance_id}]
    for namespace, name, values in (("CWAgent", GPU_METRIC_NAME, gpu), ("AWS/EC2", "CPUUtilization", cpu)):
        if values:
            cloudwatch.put_metric_data(
                Namespace=namespace,
                MetricData=[
                    {
                        "MetricName": name,
                        "Dimensions": dimensions,
                        "Timestamp": now - timedelta(minutes=5 + 10 * i),
                        "Value": value,
                        "Unit": "Percent",
                    }
                    for i, value in enumerate(values)
                ],
            )


def tags_of(endpoint: str, instance_id: str) -> dict[str, str]:
    described = client("ec2", endpoint).describe_instances(InstanceIds=[instance_id])
    instance = described["Reservations"][0]["Instances"][0]
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def state_of(endpoint: str, instance_id: str) -> str:
    described = client("ec2", endpoint).describe_instances(InstanceIds=[instance_id])
    state: str = described["Reservations"][0]["Instances"][0]["State"]["Name"]
    return state


def run(lambda_context: FakeContext) -> dict[str, Any]:
    result: dict[str, Any] = idle_handler.handler({"source": "aws.events"}, lambda_context)
    return result


def test_idle_instance_warns_its_owner_with_hours_and_cost(
    aws: str, monitor: SlackServer, lambda_context: FakeContext
) -> None:
    six_hours_ago = (datetime.now(UTC) - timedelta(hours=6)).replace(microsecond=0).isoformat()
    instance_id = launch(aws, tags=owned_by("alice", **{"mlbase:idle-checks": "1", "mlbase:idle-since": six_hours_ago}))
    put_usage(aws, instance_id, gpu=[0.0, 1.0, 0.5], cpu=[2.0, 1.0, 0.3])

    summary = run(lambda_context)

    assert summary["idle"] == [instance_id]
    assert (summary["messages"], summary["stopped"]) == (1, [])
    [request] = monitor.requests
    assert request.path == "/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-test"
    body = request.json()
    assert body["channel"] == "CWORK"
    assert body["text"].startswith("<@UALICE> your GPU instances need a look:\n")
    assert f"*alice-ws* (`{instance_id}`, g5.xlarge): *idle* for 6.0 h, ≈ $6.04 while idle" in body["text"]
    assert "(GPU ≤ 1.0 %, CPU ≤ 2.0 %)" in body["text"]
    assert "Idle checks in a row: 2." in body["text"]
    assert tags_of(aws, instance_id)["mlbase:idle-checks"] == "2"
    assert tags_of(aws, instance_id)["mlbase:idle-since"] == six_hours_ago.replace("+00:00", "Z")


def test_busy_gpu_sends_nothing_and_resets_the_count(
    aws: str, monitor: SlackServer, lambda_context: FakeContext
) -> None:
    instance_id = launch(aws, tags=owned_by("alice", **{"mlbase:idle-checks": "3", "mlbase:idle-since": "x"}))
    put_usage(aws, instance_id, gpu=[0.0, 85.0], cpu=[1.0, 1.0])

    summary = run(lambda_context)

    assert (summary["busy"], summary["idle"], summary["messages"]) == ([instance_id], [], 0)
    assert monitor.requests == []
    assert "mlbase:idle-checks" not in tags_of(aws, instance_id)
    assert "mlbase:idle-since" not in tags_of(aws, instance_id)


def test_busy_cpu_with_idle_gpu_is_busy(aws: str, monitor: SlackServer, lambda_context: FakeContext) -> None:
    instance_id = launch(aws, tags=owned_by("alice"))
    put_usage(aws, instance_id, gpu=[0.0, 0.0], cpu=[40.0, 1.0])
    assert run(lambda_context)["busy"] == [instance_id]
    assert monitor.requests == []


def test_missing_gpu_metrics_are_unknown_never_idle_never_stopped(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "1")
    instance_id = launch(aws, tags=owned_by("alice"))
    put_usage(aws, instance_id, gpu=[], cpu=[0.0, 0.0])

    summary = run(lambda_context)

    assert (summary["unknown"], summary["idle"], summary["stopped"]) == ([instance_id], [], [])
    assert state_of(aws, instance_id) == "running"
    text = monitor.requests[0].json()["text"]
    assert "activity *unknown*, no GPU metrics in the last 3 h (is the CloudWatch agent running?)" in text
    assert "mlbase:idle-checks" not in tags_of(aws, instance_id)


def test_auto_stop_after_consecutive_idle_checks_is_announced(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "2")
    instance_id = launch(aws, tags=owned_by("alice", **{"mlbase:idle-checks": "1"}))
    put_usage(aws, instance_id, gpu=[0.0], cpu=[0.0])

    summary = run(lambda_context)

    assert summary["stopped"] == [instance_id]
    assert state_of(aws, instance_id) in {"stopping", "stopped"}
    assert "*Stopped* after 2 idle checks in a row." in monitor.requests[0].json()["text"]
    assert "mlbase:idle-checks" not in tags_of(aws, instance_id)


def test_first_idle_check_does_not_stop_before_n(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "2")
    instance_id = launch(aws, tags=owned_by("alice"))
    put_usage(aws, instance_id, gpu=[0.0], cpu=[0.0])
    assert run(lambda_context)["stopped"] == []
    assert state_of(aws, instance_id) == "running"
    assert tags_of(aws, instance_id)["mlbase:idle-checks"] == "1"


def test_valid_keep_until_keeps_it_running(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "1")
    keep = (datetime.now(UTC) + timedelta(hours=4)).replace(microsecond=0)
    instance_id = launch(aws, tags=owned_by("alice", **{"keep-until": keep.isoformat()}))
    put_usage(aws, instance_id, gpu=[0.0], cpu=[0.0])

    summary = run(lambda_context)

    assert (summary["idle"], summary["stopped"]) == ([instance_id], [])
    assert state_of(aws, instance_id) == "running"
    expected = keep.isoformat().replace("+00:00", "Z")
    assert f"Kept running until {expected} (keep-until tag)." in monitor.requests[0].json()["text"]


def test_expired_keep_until_does_not_protect(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "1")
    instance_id = launch(aws, tags=owned_by("alice", **{"keep-until": "2020-01-01T00:00:00Z"}))
    put_usage(aws, instance_id, gpu=[0.0], cpu=[0.0])

    assert run(lambda_context)["stopped"] == [instance_id]
    text = monitor.requests[0].json()["text"]
    assert "keep-until tag `2020-01-01T00:00:00Z` ignored: in the past. *Stopped*" in text


def test_one_message_per_owner_and_unmanaged_gpus_reported_not_stopped(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "1")
    alice = [launch(aws, tags=owned_by("alice")) for _ in range(2)]
    keep = (datetime.now(UTC) + timedelta(hours=4)).isoformat()
    bob = launch(aws, "g4dn.xlarge", tags=owned_by("bob", **{"keep-until": keep}))
    stranger = launch(aws, "g5.2xlarge")
    cpu_box = launch(aws, "t3.micro")
    for instance_id in [*alice, bob, stranger, cpu_box]:
        put_usage(aws, instance_id, gpu=[0.0], cpu=[0.0])

    summary = run(lambda_context)

    assert summary["checked"] == 4  # the unmanaged t3.micro is out of scope
    assert summary["stopped"] == sorted(alice)
    assert state_of(aws, bob) == "running"
    assert state_of(aws, stranger) == "running"
    texts = {r.json()["text"].split(" ", 1)[0]: r.json()["text"] for r in monitor.requests}
    assert set(texts) == {"<@UALICE>", "<@UBOB>", "GPU"}
    assert all(instance_id in texts["<@UALICE>"] for instance_id in alice)
    assert stranger in texts["GPU"]
    assert "no known owner" in texts["GPU"]
    assert "@" not in texts["GPU"]


def test_slack_refusal_is_logged_and_the_stop_still_happens(
    aws: str, monitor: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLBASE_AUTO_STOP_AFTER_CHECKS", "1")
    monitor.responses.append((200, b'{"ok": false, "error": "channel_not_found"}'))
    instance_id = launch(aws, tags=owned_by("alice"))
    put_usage(aws, instance_id, gpu=[0.0], cpu=[0.0])

    summary = run(lambda_context)

    assert (summary["stopped"], summary["messages"]) == ([instance_id], 0)
    assert len(monitor.requests) == 1  # refused outright: not retried


def test_nothing_running_sends_nothing(aws: str, monitor: SlackServer, lambda_context: FakeContext) -> None:
    assert run(lambda_context) == {
        "checked": 0,
        "idle": [],
        "busy": [],
        "unknown": [],
        "stopped": [],
        "messages": 0,
    }
    assert monitor.requests == []
