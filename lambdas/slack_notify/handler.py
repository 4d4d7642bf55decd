"""SNS to Slack: every notification of the platform (budgets, Config compliance changes, GuardDuty, Security Hub and
Access Analyzer findings, CIS and other CloudWatch alarms, the idle monitor, anything else as plain text) becomes one
readable Slack message.

Nothing is dropped silently. A failed Slack call is retried here by slack_sdk's retry handlers (bounded backoff,
Retry-After honoured up to MLBASE_SLACK_MAX_DELAY_SECONDS); if it still fails the invocation raises, so Lambda's
asynchronous retries run and the event then lands in the function's on-failure destination (an SQS DLQ with an alarm
on its depth). Formatting lives in :mod:`lambdas.slack_notify.logic`; posting in :mod:`lambdas.common.slack`.

Environment variables:
    MLBASE_SLACK_SECRET_ARN          Secrets Manager secret holding ``{"webhook_url": ...}`` or
                                     ``{"bot_token": ..., "channel": ...}`` (required); cached for SECRET_MAX_AGE
    MLBASE_SLACK_API_BASE            Slack Web API base URL (default https://slack.com/api)
    MLBASE_SLACK_MAX_ATTEMPTS        Slack calls per message before giving up, 1..10 (default 4)
    MLBASE_SLACK_MAX_DELAY_SECONDS   longest wait between attempts, 0..60 (default 8), plus up to 1 s of jitter;
                                     the function timeout must exceed attempts * (10 s HTTP timeout)
                                     + (attempts - 1) * (this + 1 s)
    MLBASE_ENDPOINT_URL              optional AWS endpoint override (a local AWS double in tests); unset in AWS
IAM: secretsmanager:GetSecretValue on the secret (and kms:Decrypt if it uses a customer key);
cloudtrail:LookupEvents, to name who changed a non-compliant security group (the message goes out without that line
when CloudTrail cannot say).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.common.aws import client
from lambdas.common.slack import DEFAULT_API_BASE, RetryPolicy, SlackError, load_target, post_message
from lambdas.slack_notify.logic import change_author, format_record, security_group_to_attribute

logger = Logger(service="slack-notify")


@dataclass(frozen=True)
class Settings:
    secret_arn: str
    api_base: str
    retry: RetryPolicy

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        secret_arn = env.get("MLBASE_SLACK_SECRET_ARN", "").strip()
        if not secret_arn:
            raise ValueError("MLBASE_SLACK_SECRET_ARN must name the Slack secret")
        attempts = _number(env, "MLBASE_SLACK_MAX_ATTEMPTS", 4, 1, 10, integer=True)
        max_delay = _number(env, "MLBASE_SLACK_MAX_DELAY_SECONDS", 8, 0, 60)
        retry = RetryPolicy(attempts=int(attempts), base_delay=min(1.0, max_delay), max_delay=max_delay)
        return cls(secret_arn, env.get("MLBASE_SLACK_API_BASE") or DEFAULT_API_BASE, retry)


@cache
def settings() -> Settings:
    """Read once per container; a misconfigured function fails its first invocation with a clear message."""
    return Settings.from_env(os.environ)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    target = load_target(config.secret_arn)
    sent: list[str] = []
    for record in event.get("Records") or []:
        message = format_record(with_change_author(record))
        message_id = (record.get("Sns") or {}).get("MessageId")
        try:
            post_message(
                target,
                text=message.text,
                blocks=message.blocks,
                channel=message.channel,
                api_base=config.api_base,
                retry=config.retry,
            )
        except SlackError:
            # Raised on purpose: Lambda's async retries and the on-failure DLQ take it from here.
            logger.exception("slack delivery failed", extra={"sns_message_id": message_id, "source": message.source})
            raise
        logger.info("delivered", extra={"sns_message_id": message_id, "source": message.source})
        sent.append(message.source)
    return {"delivered": sent}


def with_change_author(record: dict[str, Any]) -> dict[str, Any]:
    """Add `changedBy` to a security group's Config finding from CloudTrail; any failure leaves the record as is."""
    sns = record.get("Sns") or {}
    try:
        event = json.loads(str(sns.get("Message") or ""))
    except ValueError:
        return record
    group_id = security_group_to_attribute(event) if isinstance(event, dict) else None
    if group_id is None:
        return record
    try:
        found = client("cloudtrail").lookup_events(
            LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": group_id}], MaxResults=50
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning(
            "cloudtrail lookup failed; sending without the author", extra={"group": group_id, "error": str(exc)}
        )
        return record
    author = change_author(found.get("Events") or [])
    if author is None:
        return record
    return {**record, "Sns": {**sns, "Message": json.dumps({**event, "changedBy": author})}}


def _number(
    env: Mapping[str, str], name: str, default: float, low: float, high: float, *, integer: bool = False
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high or (integer and not value.is_integer()):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} in {low:g}..{high:g}, got {raw!r}")
    return value
