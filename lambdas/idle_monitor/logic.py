"""Decisions of the idle monitor, as pure functions over plain values (no AWS calls here).

Scenarios (each report carries its scenario number in `scenario`):
1. Given a running instance with GPU metrics all under the GPU threshold and CPU all under the CPU threshold over
   the look-back, when checked, then it is IDLE, its idle-check count goes up by one and its owner is warned.
2. Given GPU or CPU use at or above its threshold at any period of the look-back, then it is BUSY, the count
   resets to zero and nobody is messaged.
3. Given no GPU datapoints at all (agent not running, not installed, wrong namespace), then it is UNKNOWN: reported
   as such, never counted as idle, the count resets, it is never stopped.
4. Given GPU metrics under the threshold but no CPU datapoints, then it is UNKNOWN as in 3.
5. Given IDLE, auto-stop enabled (N > 0), the count reaching N and the instance managed, when no valid keep-until
   tag is present, then it is stopped, the count resets and the stop is announced in the owner's message.
6. Given 5 but a keep-until tag in the future and within the maximum horizon, then it is not stopped and the
   message says until when it is kept.
7. Given 5 with a keep-until tag that is unparseable, in the past or beyond the horizon, then the tag is ignored,
   the instance is stopped and the message says why the tag was ignored.
8. Given an IDLE or UNKNOWN GPU-family instance without the `mlbase:managed=true` tag, then it is reported in a
   message for unknown owners and never stopped (the monitor does not know whose work it would interrupt).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from lambdas.common.roster import RosterEntry, parse_roster

MANAGED_TAG: Final = "mlbase:managed"
OWNER_TAG: Final = "Owner"
SLACK_USER_TAG: Final = "SlackUserId"
IDLE_CHECKS_TAG: Final = "mlbase:idle-checks"
IDLE_SINCE_TAG: Final = "mlbase:idle-since"
KEEP_UNTIL_TAG: Final = "keep-until"
NAME_TAG: Final = "Name"

DEFAULT_GPU_NAMESPACE: Final = "CWAgent"
# What packer/files/cloudwatch-agent.json publishes: nvidia_gpu utilization_gpu aggregated per InstanceId.
GPU_METRIC_NAME: Final = "nvidia_smi_utilization_gpu"
METRIC_PERIOD_SECONDS: Final = 300
GPU_FAMILY_PREFIXES: Final = ("g", "p")


class Activity(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Settings:
    """The monitor's configuration, validated once per container from the environment."""

    roster: Mapping[str, RosterEntry]
    prices: Mapping[str, float]
    slack_secret_arn: str
    slack_channel: str | None = None
    slack_api_base: str | None = None
    gpu_idle_percent: float = 5.0
    cpu_idle_percent: float = 5.0
    lookback_hours: float = 3.0
    auto_stop_after_checks: int = 0
    keep_max_hours: float = 168.0
    gpu_namespace: str = DEFAULT_GPU_NAMESPACE


@dataclass(frozen=True)
class Instance:
    """The parts of a described EC2 instance the monitor uses."""

    instance_id: str
    instance_type: str
    launch_time: datetime
    tags: Mapping[str, str]

    @property
    def managed(self) -> bool:
        return self.tags.get(MANAGED_TAG) == "true"

    @property
    def label(self) -> str:
        return self.tags.get(NAME_TAG) or self.tags.get(OWNER_TAG) or self.instance_id


@dataclass(frozen=True)
class KeepUntil:
    """A keep-until tag's meaning: `until` is set only when the tag is valid; `problem` says why it is not."""

    until: datetime | None = None
    problem: str | None = None
    raw: str | None = None

    @property
    def valid(self) -> bool:
        return self.until is not None


@dataclass(frozen=True)
class Usage:
    """Per-period averages over the look-back, newest last."""

    gpu: Sequence[float] = ()
    cpu: Sequence[float] = ()


@dataclass(frozen=True)
class Report:
    """The outcome for one instance: what it is doing, what was decided, what its owner is told."""

    instance: Instance
    activity: Activity
    scenario: int
    idle_checks: int
    stop: bool
    keep: KeepUntil
    owner: str | None
    slack_user_id: str | None
    idle_since: datetime | None = None
    hours_idle: float = 0.0
    hours_running: float = 0.0
    hourly_price: float | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def idle_cost(self) -> float | None:
        return None if self.hourly_price is None else round(self.hours_idle * self.hourly_price, 2)

    @property
    def running_cost(self) -> float | None:
        return None if self.hourly_price is None else round(self.hours_running * self.hourly_price, 2)

    @property
    def reported(self) -> bool:
        return self.activity is not Activity.BUSY


def parse_settings(env: Mapping[str, str]) -> Settings:
    """Validate the environment; a ValueError names the variable and the bad value."""
    secret = env.get("MLBASE_SLACK_SECRET_ARN", "")
    if not secret:
        raise ValueError("MLBASE_SLACK_SECRET_ARN must be set (Secrets Manager secret with the Slack target)")
    return Settings(
        roster=parse_roster(env.get("MLBASE_ROSTER", "[]")),
        prices=parse_prices(env.get("MLBASE_PRICES", "{}")),
        slack_secret_arn=secret,
        slack_channel=env.get("MLBASE_SLACK_CHANNEL") or None,
        slack_api_base=env.get("MLBASE_SLACK_API_BASE") or None,
        gpu_idle_percent=_number(env, "MLBASE_GPU_IDLE_PERCENT", 5.0, low=0.0, high=100.0),
        cpu_idle_percent=_number(env, "MLBASE_CPU_IDLE_PERCENT", 5.0, low=0.0, high=100.0),
        lookback_hours=_number(env, "MLBASE_LOOKBACK_HOURS", 3.0, low=0.25, high=24 * 14),
        auto_stop_after_checks=int(_number(env, "MLBASE_AUTO_STOP_AFTER_CHECKS", 0, low=0, high=1000, whole=True)),
        keep_max_hours=_number(env, "MLBASE_KEEP_MAX_HOURS", 168.0, low=1.0, high=24 * 90),
        gpu_namespace=env.get("MLBASE_GPU_METRIC_NAMESPACE") or DEFAULT_GPU_NAMESPACE,
    )


def parse_prices(raw: str) -> dict[str, float]:
    """`MLBASE_PRICES`: a JSON object of instance type to USD per hour."""
    try:
        prices = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"MLBASE_PRICES is not JSON: {exc}") from None
    if not isinstance(prices, dict):
        raise ValueError('MLBASE_PRICES must be a JSON object like {"g5.xlarge": 1.006}')
    for instance_type, price in prices.items():
        if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price) or price < 0:
            raise ValueError(f"MLBASE_PRICES[{instance_type!r}] must be a non-negative number, got {price!r}")
    return {str(key): float(value) for key, value in prices.items()}


def _number(
    env: Mapping[str, str], name: str, default: float, *, low: float, high: float, whole: bool = False
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind} between {low:g} and {high:g}, got {raw!r}")
    return value


def is_gpu_family(instance_type: str) -> bool:
    """g* and p* families carry NVIDIA GPUs (g4dn, g5, g6, g6e, p4d, p5, ...)."""
    return instance_type.split(".")[0].startswith(GPU_FAMILY_PREFIXES)


def in_scope(instance: Instance) -> bool:
    """Managed workstations, and any other GPU instance: forgotten unmanaged GPUs are the expensive ones."""
    return instance.managed or is_gpu_family(instance.instance_type)


def instance_from_ec2(described: Mapping[str, Any]) -> Instance:
    launch = described["LaunchTime"]
    if isinstance(launch, str):
        launch = datetime.fromisoformat(launch)
    return Instance(
        instance_id=described["InstanceId"],
        instance_type=described["InstanceType"],
        launch_time=launch if launch.tzinfo else launch.replace(tzinfo=UTC),
        tags={tag["Key"]: tag["Value"] for tag in described.get("Tags", [])},
    )


def classify(usage: Usage, gpu_idle_percent: float, cpu_idle_percent: float) -> tuple[Activity, int]:
    """Activity and scenario number; idle needs evidence from both metrics, busy needs either."""
    if not usage.gpu:
        return Activity.UNKNOWN, 3
    if max(usage.gpu) >= gpu_idle_percent or (usage.cpu and max(usage.cpu) >= cpu_idle_percent):
        return Activity.BUSY, 2
    if not usage.cpu:
        return Activity.UNKNOWN, 4
    return Activity.IDLE, 1


def parse_keep_until(raw: str | None, now: datetime, max_hours: float) -> KeepUntil:
    """A keep-until tag is valid when it is an ISO 8601 time after `now` and at most `max_hours` ahead.

    A time without a zone is read as UTC, which is what people mean when they type one into the console.
    """
    if raw is None or not raw.strip():
        return KeepUntil()
    try:
        until = datetime.fromisoformat(raw.strip())
    except ValueError:
        return KeepUntil(problem="not an ISO 8601 time", raw=raw)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until <= now:
        return KeepUntil(problem="in the past", raw=raw)
    if until > now + timedelta(hours=max_hours):
        return KeepUntil(problem=f"more than {max_hours:g} h ahead", raw=raw)
    return KeepUntil(until=until, raw=raw)


def previous_idle_checks(tags: Mapping[str, str]) -> int:
    """The idle-check count from the last run; a damaged tag counts as zero rather than failing the sweep."""
    try:
        return max(0, int(tags.get(IDLE_CHECKS_TAG, "0")))
    except ValueError:
        return 0


def previous_idle_since(tags: Mapping[str, str]) -> datetime | None:
    raw = tags.get(IDLE_SINCE_TAG)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def owner_of(instance: Instance, roster: Mapping[str, RosterEntry]) -> tuple[str | None, str | None]:
    """(owner name, Slack user ID) of a managed instance; the roster wins over a stale SlackUserId tag."""
    if not instance.managed:
        return None, None
    name = instance.tags.get(OWNER_TAG)
    entry = roster.get(name) if name else None
    return name, entry.slack_user_id if entry else instance.tags.get(SLACK_USER_TAG)


def assess(instance: Instance, usage: Usage, settings: Settings, now: datetime) -> Report:
    """Everything the monitor decides about one instance."""
    activity, scenario = classify(usage, settings.gpu_idle_percent, settings.cpu_idle_percent)
    keep = parse_keep_until(instance.tags.get(KEEP_UNTIL_TAG), now, settings.keep_max_hours)
    owner, slack_user_id = owner_of(instance, settings.roster)
    if not instance.managed and activity is not Activity.BUSY:
        scenario = 8
    idle_checks = previous_idle_checks(instance.tags) + 1 if activity is Activity.IDLE else 0
    idle_since: datetime | None = None
    if activity is Activity.IDLE:
        window_start = max(now - timedelta(hours=settings.lookback_hours), instance.launch_time)
        earlier = previous_idle_since(instance.tags) if idle_checks > 1 else None
        idle_since = min(earlier, window_start) if earlier else window_start
    stop = (
        activity is Activity.IDLE
        and instance.managed
        and settings.auto_stop_after_checks > 0
        and idle_checks >= settings.auto_stop_after_checks
        and not keep.valid
    )
    if stop:
        scenario = 7 if keep.problem else 5
    elif activity is Activity.IDLE and instance.managed and keep.valid:
        scenario = 6
    return Report(
        instance=instance,
        activity=activity,
        scenario=scenario,
        idle_checks=idle_checks,
        stop=stop,
        keep=keep,
        owner=owner,
        slack_user_id=slack_user_id,
        idle_since=idle_since,
        hours_idle=_hours(now - idle_since) if idle_since else 0.0,
        hours_running=_hours(now - instance.launch_time),
        hourly_price=settings.prices.get(instance.instance_type),
        usage=usage,
    )


def tag_changes(report: Report) -> tuple[dict[str, str], list[str]]:
    """Tags to set and tag keys to delete after the decision; a stop starts the count afresh."""
    if report.activity is Activity.IDLE and not report.stop and report.idle_since is not None:
        return {IDLE_CHECKS_TAG: str(report.idle_checks), IDLE_SINCE_TAG: _iso(report.idle_since)}, []
    present = [key for key in (IDLE_CHECKS_TAG, IDLE_SINCE_TAG) if key in report.instance.tags]
    return {}, present


def group_by_owner(reports: Iterable[Report]) -> dict[str | None, list[Report]]:
    """Reported instances grouped by Slack user ID (None: owner unknown), in a stable order."""
    groups: dict[str | None, list[Report]] = {}
    for report in sorted(reports, key=lambda r: (r.slack_user_id or "~", r.instance.instance_id)):
        if report.reported:
            groups.setdefault(report.slack_user_id, []).append(report)
    return groups


def owner_message(slack_user_id: str | None, reports: Sequence[Report], lookback_hours: float) -> str:
    """One Slack message (mrkdwn) for one owner, or for all instances whose owner is unknown."""
    if slack_user_id:
        header = f"<@{slack_user_id}> your GPU instances need a look:"
    else:
        header = "GPU instances with no known owner (no `mlbase:managed` tags) need a look:"
    return "\n".join([header, *(instance_line(report, lookback_hours) for report in reports)])


def instance_line(report: Report, lookback_hours: float) -> str:
    """One bullet: instance, what it is doing, hours and cost, and what happened to it."""
    instance = report.instance
    head = f"• *{instance.label}* (`{instance.instance_id}`, {instance.instance_type})"
    running = f"running {report.hours_running:.1f} h" + _cost(report.running_cost)
    if report.activity is Activity.UNKNOWN:
        missing = "GPU metrics" if not report.usage.gpu else "CPU metrics"
        return (
            f"{head}: activity *unknown*, no {missing} in the last {lookback_hours:g} h "
            f"(is the CloudWatch agent running?); {running}."
        )
    parts = [
        f"{head}: *idle* for {report.hours_idle:.1f} h{_cost(report.idle_cost, ' while idle')} "
        f"(GPU ≤ {max(report.usage.gpu):.1f} %, CPU ≤ {max(report.usage.cpu):.1f} %); {running}."
    ]
    if report.keep.problem:
        parts.append(f"keep-until tag `{report.keep.raw}` ignored: {report.keep.problem}.")
    if report.stop:
        parts.append(f"*Stopped* after {report.idle_checks} idle checks in a row.")
    elif report.keep.valid and report.keep.until is not None:
        parts.append(f"Kept running until {_iso(report.keep.until)} (keep-until tag).")
    elif report.instance.managed:
        parts.append(f"Idle checks in a row: {report.idle_checks}.")
    return " ".join(parts)


def _cost(amount: float | None, suffix: str = "") -> str:
    return f", price unknown{suffix}" if amount is None else f", ≈ ${amount:,.2f}{suffix}"


def _hours(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds() / 3600)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
