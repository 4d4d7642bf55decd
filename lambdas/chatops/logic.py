"""Decisions of the `/gpu` Slack command, as pure functions: signature check, parsing, permission, messages.

Scenarios:
1. Given a request whose `X-Slack-Signature` is not the v0 HMAC-SHA256 of `v0:{timestamp}:{raw body}` under the
   signing secret, or lacks the headers, it is refused (401) before its body is parsed.
2. Given a timestamp more than 5 minutes from now (either way), it is refused (401): a replayed request.
3. Given an unknown command or bad arguments, the caller gets the usage text, privately.
4. Given `start`, `stop` or `keep` on an instance that is not the caller's, and a caller who is not an admin, the
   caller gets a polite refusal and nothing is done.
5. Given `list`, `status` (anyone may look) or an allowed action, the request is acknowledged at once and the work
   runs in an asynchronous invocation, which posts the result.
6. Given `start` refused for lack of capacity, the next instance type in the fallback list is tried (the instance is
   stopped, so its type can change); when none is left or none is configured, the message says so plainly.
7. Given a request whose signature was already seen (a replay inside the 5-minute window), it is refused (401):
   the first sighting of each signature is recorded with a conditional put, and only the first one wins.
8. Given a job (the asynchronous invocation) that does not carry a Slack-signed request fresher than
   `JOB_MAX_AGE_SECONDS`, or one whose request already ran, it is refused and nothing is done or posted: the job
   function trusts only what Slack signed, so invoking it directly with a made-up user or command gets nowhere.
9. Given a job that fails unexpectedly, the caller is told in Slack, and the failure is raised so that Lambda sends
   the job to its on-failure destination (a queue with an alarm).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from slack_sdk.signature import Clock, SignatureVerifier

from lambdas.common.roster import RosterEntry, parse_roster

MAX_CLOCK_SKEW_SECONDS: Final = 5 * 60
# A job may wait in Lambda's asynchronous queue (at most 10 minutes, the job function's maximum event age) after
# the request's own 5-minute window.
JOB_MAX_AGE_SECONDS: Final = MAX_CLOCK_SKEW_SECONDS + 10 * 60
KEEP_UNTIL_TAG: Final = "keep-until"

USAGE: Final = "\n".join(
    [
        "*/gpu* manages the research GPU workstations:",
        "• `/gpu list`: everyone's instances and their state",
        "• `/gpu status [NAME]`: one instance in detail (yours when NAME is left out)",
        "• `/gpu start [NAME]`: start an instance",
        "• `/gpu stop [NAME]`: stop an instance",
        "• `/gpu keep [NAME] HOURS`: keep it running through idle checks for HOURS (sets the keep-until tag)",
        "• `/gpu help`: this text",
        "Only an instance's owner or an admin may start, stop or keep it.",
    ]
)


class Verb(StrEnum):
    LIST = "list"
    STATUS = "status"
    START = "start"
    STOP = "stop"
    KEEP = "keep"
    HELP = "help"


ACTIONS: Final = frozenset({Verb.START, Verb.STOP, Verb.KEEP})


class SignatureProblem(StrEnum):
    MISSING = "missing signature headers"
    STALE = "stale or future timestamp"
    FORGED = "signature mismatch"
    REPLAYED = "signature already seen"


class Seen(StrEnum):
    """What a recorded signature stood for; a request and the job it started are recorded apart."""

    REQUEST = "request"
    JOB = "job"


class CommandError(ValueError):
    """A command that cannot be run as typed; the message is shown to the caller."""


@dataclass(frozen=True)
class Settings:
    """The bot's configuration, validated once per container from the environment."""

    signing_secret_arn: str
    roster: Mapping[str, RosterEntry]
    admins: frozenset[str]
    fallback_types: Mapping[str, tuple[str, ...]]
    slack_secret_arn: str | None = None
    slack_api_base: str | None = None
    keep_max_hours: float = 168.0
    seen_table: str = ""
    jobs_function: str | None = None


@dataclass(frozen=True)
class Command:
    verb: Verb
    name: str | None = None
    hours: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"verb": self.verb.value, "name": self.name, "hours": self.hours}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Command:
        hours = data.get("hours")
        return cls(Verb(data["verb"]), data.get("name"), float(hours) if hours is not None else None)

    def __str__(self) -> str:
        parts = [self.verb.value, self.name or "", f"{self.hours:g}" if self.hours is not None else ""]
        return " ".join(part for part in parts if part)


def parse_settings(env: Mapping[str, str]) -> Settings:
    """Validate the environment; a ValueError names the variable and the bad value."""
    signing = env.get("MLBASE_SIGNING_SECRET_ARN", "")
    if not signing:
        raise ValueError("MLBASE_SIGNING_SECRET_ARN must be set (Secrets Manager secret with the signing secret)")
    raw_keep = env.get("MLBASE_KEEP_MAX_HOURS") or "168"
    try:
        keep_max = float(raw_keep)
    except ValueError:
        raise ValueError(f"MLBASE_KEEP_MAX_HOURS must be a number, got {raw_keep!r}") from None
    if not 1 <= keep_max <= 24 * 90:
        raise ValueError(f"MLBASE_KEEP_MAX_HOURS must be between 1 and 2160, got {raw_keep!r}")
    seen_table = env.get("MLBASE_SEEN_TABLE", "")
    if not seen_table:
        raise ValueError("MLBASE_SEEN_TABLE must be set (DynamoDB table of seen request signatures)")
    return Settings(
        signing_secret_arn=signing,
        roster=parse_roster(env.get("MLBASE_ROSTER", "[]")),
        admins=frozenset(part.strip() for part in env.get("MLBASE_ADMIN_SLACK_IDS", "").split(",") if part.strip()),
        fallback_types=parse_fallbacks(env.get("MLBASE_FALLBACK_INSTANCE_TYPES", "")),
        slack_secret_arn=env.get("MLBASE_SLACK_SECRET_ARN") or None,
        slack_api_base=env.get("MLBASE_SLACK_API_BASE") or None,
        keep_max_hours=keep_max,
        seen_table=seen_table,
        jobs_function=env.get("MLBASE_JOBS_FUNCTION") or None,
    )


def parse_fallbacks(raw: str) -> dict[str, tuple[str, ...]]:
    """`MLBASE_FALLBACK_INSTANCE_TYPES`: JSON {"g5.xlarge": ["g4dn.xlarge"]}; empty means no retry."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"MLBASE_FALLBACK_INSTANCE_TYPES is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError('MLBASE_FALLBACK_INSTANCE_TYPES must be a JSON object like {"g5.xlarge": ["g4dn.xlarge"]}')
    for key, value in parsed.items():
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise ValueError(f"MLBASE_FALLBACK_INSTANCE_TYPES[{key!r}] must be a list of instance types")
    return {str(key): tuple(value) for key, value in parsed.items()}


class _ReceivedAt(Clock):
    def __init__(self, moment: float) -> None:
        self.moment = moment

    def now(self) -> float:
        return self.moment


def check_signature(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    max_age: int = MAX_CLOCK_SKEW_SECONDS,
) -> SignatureProblem | None:
    """None when the request is Slack's and fresh; otherwise what is wrong (scenarios 1, 2 and 8).

    slack_sdk's SignatureVerifier checks the HMAC (in constant time) and 5 minutes either side of its clock, which
    reads when the bot may have received the request: `now`, or for a job that waited in Lambda's queue for up to
    `max_age` - 5 minutes, the moment of that wait nearest the timestamp.
    """
    if not timestamp or not signature:
        return SignatureProblem.MISSING
    try:
        sent = int(timestamp)
    except ValueError:
        return SignatureProblem.MISSING
    received = min(now, max(sent, now - (max_age - MAX_CLOCK_SKEW_SECONDS)))
    try:
        valid = SignatureVerifier(secret, _ReceivedAt(received)).is_valid(body, timestamp, signature)
    except UnicodeDecodeError:  # Slack signs UTF-8 text: other bytes are not its request
        valid = False
    if valid:
        return None
    return SignatureProblem.STALE if abs(received - sent) > MAX_CLOCK_SKEW_SECONDS else SignatureProblem.FORGED


def seen_key(kind: Seen, signature: str) -> str:
    return f"{kind.value}#{signature}"


def forget_after(timestamp: str, kind: Seen) -> int:
    """Epoch seconds after which a recorded signature may expire: by then its timestamp is refused anyway."""
    window = JOB_MAX_AGE_SECONDS if kind is Seen.JOB else MAX_CLOCK_SKEW_SECONDS
    return int(timestamp) + window + 60


def failure_text(command: str) -> str:
    return (
        f"Sorry, `/gpu {command}` failed unexpectedly; it may be half done. The platform team has been alerted;"
        " check with `/gpu status` before trying again."
    )


def parse_command(text: str, caller: str, roster: Mapping[str, RosterEntry], keep_max_hours: float) -> Command:
    """Parse the text after `/gpu`. NAME defaults to the caller's own roster entry; raises CommandError."""
    words = text.split()
    if not words:
        return Command(Verb.HELP)
    try:
        verb = Verb(words[0].lower())
    except ValueError:
        raise CommandError(f"Unknown command `{words[0]}`.") from None
    args = words[1:]
    if verb in (Verb.LIST, Verb.HELP):
        if args:
            raise CommandError(f"`{verb}` takes no arguments.")
        return Command(verb)
    hours: float | None = None
    if verb is Verb.KEEP:
        if not args:
            raise CommandError("`keep` needs HOURS, e.g. `/gpu keep 6`.")
        hours = parse_hours(args[-1], keep_max_hours)
        args = args[:-1]
    if len(args) > 1:
        raise CommandError(f"`{verb}` takes one NAME, got `{' '.join(args)}`.")
    name = args[0] if args else own_name(caller, roster)
    if name is None:
        raise CommandError(f"You have no instance in the roster; say whose: `/gpu {verb} NAME`.")
    if name not in roster:
        raise CommandError(f"No one called `{name}` in the roster; known: {', '.join(sorted(roster)) or 'nobody'}.")
    return Command(verb, name, hours)


def parse_hours(raw: str, keep_max_hours: float) -> float:
    try:
        hours = float(raw)
    except ValueError:
        raise CommandError(f"HOURS must be a number, got `{raw}`.") from None
    if not math.isfinite(hours) or not 0 < hours <= keep_max_hours:
        raise CommandError(f"HOURS must be more than 0 and at most {keep_max_hours:g}, got `{raw}`.")
    return hours


def own_name(caller: str, roster: Mapping[str, RosterEntry]) -> str | None:
    names = [entry.name for entry in roster.values() if entry.slack_user_id == caller]
    return names[0] if len(names) == 1 else None


def may_run(caller: str, command: Command, settings: Settings) -> bool:
    """Anyone may look; only the owner or an admin may act (scenario 4)."""
    if command.verb not in ACTIONS:
        return True
    if caller in settings.admins:
        return True
    entry = settings.roster.get(command.name or "")
    return entry is not None and entry.slack_user_id == caller


def refusal(caller: str, command: Command, settings: Settings) -> str:
    owner = settings.roster[command.name or ""].slack_user_id if command.name in settings.roster else None
    whose = f"<@{owner}>'s" if owner else "that"
    return (
        f"Sorry <@{caller}>, only the owner or an admin can {command.verb} {whose} instance. "
        f"Ask them, or an admin, if it needs to {command.verb}."
    )


def ack_text(command: Command) -> str:
    return f"Working on `/gpu {command}`…"


def candidate_types(current: str, preferred: str | None, fallbacks: Mapping[str, Sequence[str]]) -> list[str]:
    """Instance types to try in order when starting: the roster's type first (so an instance moved to a fallback
    type goes back when capacity returns), then its fallbacks; without fallbacks, just the current type."""
    first = preferred or current
    chain = fallbacks.get(first)
    if not chain:
        return [current]
    return list(dict.fromkeys([first, *chain]))


def keep_until(now: datetime, hours: float) -> str:
    return _iso(now + timedelta(hours=hours))


def instance_summary(name: str, instance: Mapping[str, Any] | None) -> str:
    """One `list` line."""
    if instance is None:
        return f"• *{name}*: no instance"
    tags = _tags(instance)
    line = f"• *{name}*: {instance['State']['Name']}, {instance['InstanceType']} (`{instance['InstanceId']}`)"
    if tags.get(KEEP_UNTIL_TAG):
        line += f", keep-until {tags[KEEP_UNTIL_TAG]}"
    return line


def instance_details(name: str, instance: Mapping[str, Any] | None) -> str:
    """The `status` answer."""
    if instance is None:
        return f"*{name}* has no instance."
    tags = _tags(instance)
    launch = instance.get("LaunchTime")
    lines = [
        f"*{name}*: {instance['State']['Name']}",
        f"• instance `{instance['InstanceId']}`, {instance['InstanceType']}",
        f"• AMI version {tags.get('mlbase:ami-version', 'unknown')}",
        f"• idle checks in a row: {tags.get('mlbase:idle-checks', '0')}",
        f"• keep-until: {tags.get(KEEP_UNTIL_TAG, 'not set')}",
    ]
    if isinstance(launch, datetime) and instance["State"]["Name"] == "running":
        lines.append(f"• running since {_iso(launch)}")
    return "\n".join(lines)


def _tags(instance: Mapping[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
