"""Security groups open to the world: the AWS Config custom rule `sg-open-world` and its real-time path.

The decision and its Given/When/Then scenarios live in :mod:`lambdas.sg_open_world.logic`. Two functions run this
handler with different permissions: the Config rule's evaluator receives AWS Config invocations (``invokingEvent``)
and reports evaluations with ``config:PutEvaluations``; the guard receives EventBridge events (``detail-type``) and
is described in :mod:`lambdas.sg_open_world.guard`. Prefix lists in a group's rules are resolved through EC2 on
both paths (:mod:`lambdas.sg_open_world.lookups`).

Config invocations handled:
- ``ConfigurationItemChangeNotification``: the item is in the event.
- ``OversizedConfigurationItemChangeNotification``: the event holds a summary only; the item is fetched with
  ``config:GetResourceConfigHistory`` (unless the summary already says the group was deleted).
- ``ScheduledNotification``: every security group of the region is listed with ``ec2:DescribeSecurityGroups``
  and evaluated.
A result token of ``TESTMODE`` sends the evaluations with ``TestMode=True`` (the RDK convention for local runs).

Environment variables (the guard's own are listed in its module):
    MLBASE_WORLD_EXCEPTIONS  JSON list of reviewed exceptions from config/platform.yaml (see logic.parse_exceptions)
    MLBASE_ENDPOINT_URL      optional AWS endpoint override (a local AWS double in tests); unset in AWS
    POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL   the usual Powertools logging settings

IAM (evaluator): config:PutEvaluations, config:GetResourceConfigHistory, ec2:DescribeSecurityGroups,
ec2:DescribeManagedPrefixLists, ec2:GetManagedPrefixListEntries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.aws import client
from lambdas.sg_open_world import guard
from lambdas.sg_open_world.grants import RESOURCE_TYPE, configuration_item_from_ec2, configuration_prefix_list_ids
from lambdas.sg_open_world.logic import (
    DELETED_STATUSES,
    WorldException,
    evaluate,
    parse_exceptions,
    parse_rule_parameters,
)
from lambdas.sg_open_world.lookups import prefix_lists

logger = Logger(service="sg-open-world")

PUT_EVALUATIONS_BATCH = 100  # the API's limit per call
TEST_MODE_TOKEN = "TESTMODE"  # noqa: S105 - a marker, not a credential


@dataclass(frozen=True)
class Settings:
    exceptions: Mapping[str, WorldException]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(exceptions=parse_exceptions(env.get("MLBASE_WORLD_EXCEPTIONS")))


SETTINGS = Settings.from_env(os.environ)


@lru_cache(maxsize=1)
def guard_settings() -> guard.GuardSettings:
    """Read on the guard's first event only: the evaluator has no topic and needs none."""
    return guard.GuardSettings.from_env(os.environ)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "invokingEvent" in event:
        return config_rule(event)
    if "detail-type" in event:
        return guard.handle(event, guard_settings())
    raise ValueError("neither an AWS Config invocation (invokingEvent) nor an EventBridge event (detail-type)")


def config_rule(event: Mapping[str, Any]) -> dict[str, Any]:
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
    lists = prefix_lists(configuration_prefix_list_ids(item)) if item.get("resourceType") == RESOURCE_TYPE else {}
    compliance, annotation = evaluate(item, params, prefix_lists=lists, exceptions=SETTINGS.exceptions)
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
