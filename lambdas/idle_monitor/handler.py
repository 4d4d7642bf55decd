"""Idle monitor Lambda, run on a schedule (default every 3 hours): finds forgotten GPU instances and says so in Slack.

For each running instance that is managed (tag `mlbase:managed=true`) or of a GPU family (g*, p*), it reads GPU
utilization (CloudWatch agent metric `nvidia_smi_utilization_gpu`, dimension InstanceId) and `AWS/EC2`
CPUUtilization over the look-back, in 5-minute averages. Idle means every period under both thresholds; missing GPU
metrics mean "unknown", which is reported and never counted as idle. One Slack message per owner lists their idle
and unknown instances with hours idle and cost; when auto-stop is on, a managed instance idle for N consecutive
checks is stopped (unless a valid `keep-until` tag protects it) and the stop is announced in that message. The
decisions and their scenarios live in :mod:`lambdas.idle_monitor.logic`.

Environment variables:
    MLBASE_SLACK_SECRET_ARN        required; Secrets Manager secret with the Slack target (see lambdas.common.slack)
    MLBASE_ROSTER                  JSON list of {"name", "slack_user_id", "instance_type"}; maps the Owner tag to Slack
    MLBASE_PRICES                  JSON object, instance type -> USD per hour (e.g. {"g5.xlarge": 1.006})
    MLBASE_GPU_IDLE_PERCENT        GPU utilization under which a period counts as idle (default 5)
    MLBASE_CPU_IDLE_PERCENT        CPU utilization under which a period counts as idle (default 5)
    MLBASE_LOOKBACK_HOURS          how far back each check looks; match the schedule (default 3)
    MLBASE_AUTO_STOP_AFTER_CHECKS  stop a managed instance after this many idle checks in a row; 0 = never (default)
    MLBASE_KEEP_MAX_HOURS          furthest a keep-until tag may reach into the future to count (default 168)
    MLBASE_GPU_METRIC_NAMESPACE    namespace of the CloudWatch agent's GPU metrics (default CWAgent)
    MLBASE_SLACK_CHANNEL           optional channel ID overriding the secret's channel (bot-token targets only)
    MLBASE_SLACK_API_BASE          optional Slack Web API base URL (a local Slack double in tests)
    MLBASE_ENDPOINT_URL            optional AWS endpoint override (a local AWS double in tests)

IAM: ec2:DescribeInstances; cloudwatch:GetMetricData; ec2:CreateTags and ec2:DeleteTags limited to the tag keys
`mlbase:idle-checks` and `mlbase:idle-since`; ec2:StopInstances on instances tagged `mlbase:managed=true`;
secretsmanager:GetSecretValue on the Slack secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.aws import client
from lambdas.common.slack import DEFAULT_API_BASE, SlackError, load_target, post_message
from lambdas.idle_monitor.logic import (
    GPU_METRIC_NAME,
    METRIC_PERIOD_SECONDS,
    Instance,
    Report,
    Settings,
    Usage,
    assess,
    group_by_owner,
    in_scope,
    instance_from_ec2,
    owner_message,
    parse_settings,
    tag_changes,
)

logger = Logger(service="idle-monitor")

# GetMetricData accepts 500 queries per call; two per instance.
INSTANCES_PER_METRIC_CALL = 250


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The validated environment, read once per container (a bad value fails the first invocation loudly)."""
    return parse_settings(os.environ)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    now = datetime.now(UTC)
    instances = [instance for instance in running_instances() if in_scope(instance)]
    usage = fetch_usage(instances, config, now)
    reports = [assess(instance, usage[instance.instance_id], config, now) for instance in instances]

    stopped = stop_instances([report for report in reports if report.stop])
    for report in reports:
        apply_tags(report)
        logger.info(
            "assessed",
            extra={
                "instance_id": report.instance.instance_id,
                "activity": report.activity.value,
                "scenario": report.scenario,
                "idle_checks": report.idle_checks,
                "stopped": report.instance.instance_id in stopped,
                "owner": report.owner,
            },
        )

    delivered = announce([replace_stop(report, stopped) for report in reports], config)
    summary = {
        "checked": len(reports),
        "idle": _ids(reports, "idle"),
        "busy": _ids(reports, "busy"),
        "unknown": _ids(reports, "unknown"),
        "stopped": sorted(stopped),
        "messages": delivered,
    }
    logger.info("idle check done", extra=summary)
    return summary


def running_instances() -> Iterable[Instance]:
    paginator = client("ec2").get_paginator("describe_instances")
    for page in paginator.paginate(Filters=[{"Name": "instance-state-name", "Values": ["running"]}]):
        for reservation in page["Reservations"]:
            for described in reservation["Instances"]:
                yield instance_from_ec2(described)


def fetch_usage(instances: Sequence[Instance], config: Settings, now: datetime) -> dict[str, Usage]:
    """Per-instance GPU and CPU 5-minute averages over the look-back, oldest first."""
    start = now - timedelta(hours=config.lookback_hours)
    values: dict[str, list[float]] = {}
    cloudwatch = client("cloudwatch")
    for offset in range(0, len(instances), INSTANCES_PER_METRIC_CALL):
        chunk = instances[offset : offset + INSTANCES_PER_METRIC_CALL]
        queries = [
            query
            for index, instance in enumerate(chunk, start=offset)
            for query in (
                _query(f"gpu{index}", config.gpu_namespace, GPU_METRIC_NAME, instance.instance_id),
                _query(f"cpu{index}", "AWS/EC2", "CPUUtilization", instance.instance_id),
            )
        ]
        paginator = cloudwatch.get_paginator("get_metric_data")
        for page in paginator.paginate(
            MetricDataQueries=queries, StartTime=start, EndTime=now, ScanBy="TimestampAscending"
        ):
            for result in page["MetricDataResults"]:
                values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
    return {
        instance.instance_id: Usage(gpu=tuple(values.get(f"gpu{i}", ())), cpu=tuple(values.get(f"cpu{i}", ())))
        for i, instance in enumerate(instances)
    }


def _query(query_id: str, namespace: str, metric: str, instance_id: str) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": metric,
                "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
            },
            "Period": METRIC_PERIOD_SECONDS,
            "Stat": "Average",
        },
        "ReturnData": True,
    }


def stop_instances(reports: Sequence[Report]) -> set[str]:
    """Stop the instances the rules chose; returns the IDs EC2 accepted. One failure does not spare the others."""
    stopped: set[str] = set()
    ec2 = client("ec2")
    for report in reports:
        instance_id = report.instance.instance_id
        try:
            ec2.stop_instances(InstanceIds=[instance_id])
        except Exception:
            logger.exception("stop failed", extra={"instance_id": instance_id, "owner": report.owner})
            continue
        stopped.add(instance_id)
        logger.info("stopped idle instance", extra={"instance_id": instance_id, "owner": report.owner})
    return stopped


def replace_stop(report: Report, stopped: set[str]) -> Report:
    """A stop that EC2 refused is reported as not stopped, so the message never claims what did not happen."""
    if report.stop and report.instance.instance_id not in stopped:
        return replace(report, stop=False)
    return report


def apply_tags(report: Report) -> None:
    to_set, to_delete = tag_changes(report)
    ec2 = client("ec2")
    instance_id = report.instance.instance_id
    if to_set:
        ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in to_set.items()])
    if to_delete:
        ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": key} for key in to_delete])


def announce(reports: Sequence[Report], config: Settings) -> int:
    """One message per owner; returns how many Slack accepted. A refused message is logged as an error and the
    rest still go out: raising would make the scheduled retry count the same idle period twice."""
    groups = group_by_owner(reports)
    if not groups:
        return 0
    target = load_target(config.slack_secret_arn)
    delivered = 0
    for slack_user_id, owned in groups.items():
        text = owner_message(slack_user_id, owned, config.lookback_hours)
        try:
            post_message(
                target,
                text=text,
                channel=config.slack_channel,
                api_base=config.slack_api_base or DEFAULT_API_BASE,
            )
        except SlackError:
            logger.exception(
                "slack message failed",
                extra={"slack_user_id": slack_user_id, "instances": [r.instance.instance_id for r in owned]},
            )
            continue
        delivered += 1
    return delivered


def _ids(reports: Iterable[Report], activity: str) -> list[str]:
    return sorted(report.instance.instance_id for report in reports if report.activity.value == activity)
