"""AWS Config custom Lambda rule `sg-open-world`: flags security groups open to 0.0.0.0/0 or ::/0.

The decision and its Given/When/Then scenarios live in :mod:`lambdas.sg_open_world.logic`; this module turns
AWS Config invocations into configuration items and reports the evaluations with ``config:PutEvaluations``.

Invocations handled:
- ``ConfigurationItemChangeNotification``: the item is in the event.
- ``OversizedConfigurationItemChangeNotification``: the event holds a summary only; the item is fetched with
  ``config:GetResourceConfigHistory`` (unless the summary already says the group was deleted).
- ``ScheduledNotification``: every security group of the region is listed with ``ec2:DescribeSecurityGroups``
  and evaluated.
A result token of ``TESTMODE`` sends the evaluations with ``TestMode=True`` (the RDK convention for local runs).

Environment variables (none required):
    MLBASE_ENDPOINT_URL   optional AWS endpoint override (a local AWS double in tests); unset in AWS
    POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL   the usual Powertools logging settings

IAM: config:PutEvaluations, config:GetResourceConfigHistory, ec2:DescribeSecurityGroups.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.aws import client
from lambdas.sg_open_world.logic import (
    DELETED_STATUSES,
    RESOURCE_TYPE,
    configuration_item_from_ec2,
    evaluate,
    parse_rule_parameters,
)

logger = Logger(service="sg-open-world")

PUT_EVALUATIONS_BATCH = 100  # the API's limit per call
TEST_MODE_TOKEN = "TESTMODE"  # noqa: S105 - a marker, not a credential


@dataclass(frozen=True)
class Settings:
    endpoint_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(endpoint_url=env.get("MLBASE_ENDPOINT_URL") or None)


SETTINGS = Settings.from_env(os.environ)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    invoking = json.loads(event["invokingEvent"])
    # Validated first (scenario 10), so bad parameters fail the invocation before any API call.
    parse_rule_parameters(event.get("ruleParameters"))
    raw_params = json.loads(event.get("ruleParameters") or "{}")
    message_type = invoking.get("messageType")
    logger.info("invoked", extra={"message_type": message_type, "rule": event.get("configRuleName")})

    if message_type == "ScheduledNotification":
        timestamp = _timestamp(invoking["notificationCreationTime"])
        evaluations = [
            _evaluation(item, raw_params, timestamp)
            for item in _all_security_groups(invoking["notificationCreationTime"])
        ]
    elif message_type in ("ConfigurationItemChangeNotification", "OversizedConfigurationItemChangeNotification"):
        item = (
            invoking["configurationItem"]
            if message_type == "ConfigurationItemChangeNotification"
            else _oversized_item(invoking["configurationItemSummary"])
        )
        timestamp = _timestamp(item["configurationItemCaptureTime"])
        if event.get("eventLeftScope"):
            evaluations = [_record(item, "NOT_APPLICABLE", "[S2] security group left the rule's scope", timestamp)]
        else:
            evaluations = [_evaluation(item, raw_params, timestamp)]
    else:
        raise ValueError(f"unexpected messageType {message_type!r}")

    failed = _put_evaluations(evaluations, event["resultToken"])
    summary = {
        "evaluated": len(evaluations),
        "non_compliant": [e["ComplianceResourceId"] for e in evaluations if e["ComplianceType"] == "NON_COMPLIANT"],
        "failed": len(failed),
    }
    logger.info("evaluations sent", extra=summary)
    if failed:
        raise RuntimeError(f"AWS Config refused {len(failed)} evaluations: {failed[:3]}")
    return summary


def _evaluation(item: Mapping[str, Any], params: Mapping[str, Any], timestamp: datetime) -> dict[str, Any]:
    compliance, annotation = evaluate(item, params)
    return _record(item, compliance, annotation, timestamp)


def _record(item: Mapping[str, Any], compliance: str, annotation: str, timestamp: datetime) -> dict[str, Any]:
    return {
        "ComplianceResourceType": item.get("resourceType", RESOURCE_TYPE),
        "ComplianceResourceId": item["resourceId"],
        "ComplianceType": compliance,
        "Annotation": annotation,
        "OrderingTimestamp": timestamp,
    }


def _oversized_item(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """The full item behind an oversized notification; a deletion needs no fetch (there is nothing to fetch)."""
    if summary.get("configurationItemStatus") in DELETED_STATUSES:
        return summary
    history = client("config").get_resource_config_history(
        resourceType=summary["resourceType"], resourceId=summary["resourceId"], limit=1
    )
    item: dict[str, Any] = history["configurationItems"][0]
    # The history API spells the capture time and status like the notification does, but as datetime/str.
    capture = item.get("configurationItemCaptureTime")
    if isinstance(capture, datetime):
        item["configurationItemCaptureTime"] = capture.isoformat()
    return item


def _all_security_groups(capture_time: str) -> Iterable[dict[str, Any]]:
    paginator = client("ec2").get_paginator("describe_security_groups")
    for page in paginator.paginate():
        for group in page["SecurityGroups"]:
            yield configuration_item_from_ec2(group, capture_time)


def _put_evaluations(evaluations: list[dict[str, Any]], token: str) -> list[dict[str, Any]]:
    config = client("config")
    failed: list[dict[str, Any]] = []
    for start in range(0, len(evaluations), PUT_EVALUATIONS_BATCH):
        batch = evaluations[start : start + PUT_EVALUATIONS_BATCH]
        answer = config.put_evaluations(Evaluations=batch, ResultToken=token, TestMode=token == TEST_MODE_TOKEN)
        failed.extend(answer.get("FailedEvaluations", []))
    return failed


def _timestamp(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
