"""Turn one SNS record into one readable Slack message: what happened, in which account, to which resource, and
a console link. One formatter per source; anything unrecognised is still delivered, as plain text.

Sources recognised, in this order:
- idle monitor: JSON with ``"source": "mlbase.idle_monitor"``; its ``text``/``blocks`` (and ``channel``) pass
  through untouched.
- AWS Config compliance change: the EventBridge event ``"detail-type": "Config Rules Compliance Change"``
  delivered through SNS, optionally enriched with ``changedBy`` (top level or in ``detail``).
- GuardDuty finding: the EventBridge event ``"detail-type": "GuardDuty Finding"`` (severity 7 and above reach the
  topic).
- Security Hub finding: ``"detail-type": "Security Hub Findings - Imported"``, each finding of ``detail.findings``.
- IAM Access Analyzer finding: ``"detail-type": "Access Analyzer Finding"``.
- CIS alarm: a CloudWatch alarm on a CIS metric (namespace ``LogMetrics``, description ``<control>: <what>. ...``).
- CloudWatch alarm state change: SNS JSON with ``AlarmName`` and ``NewStateValue``.
- AWS Budgets: the plain-text notification (subject ``AWS Budgets: ...`` or a body starting
  ``AWS Budget Notification``).
- anything else: the subject and the message as sent.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

IDLE_MONITOR_SOURCE = "mlbase.idle_monitor"
CONFIG_DETAIL_TYPE = "Config Rules Compliance Change"
_ARN_ACCOUNT = re.compile(r"^arn:[^:]+:[^:]+:([^:]*):(\d{12}):")
_COMPLIANCE_ICON = {"NON_COMPLIANT": ":red_circle:", "COMPLIANT": ":large_green_circle:"}
_ALARM_ICON = {"ALARM": ":rotating_light:", "OK": ":white_check_mark:", "INSUFFICIENT_DATA": ":grey_question:"}


@dataclass(frozen=True)
class SlackMessage:
    """What to post: `text` is always set (notification and fallback); `blocks` only when they add something."""

    source: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    channel: str | None = None


def format_record(record: Mapping[str, Any]) -> SlackMessage:
    """Format one ``Records[]`` entry of an SNS-triggered Lambda event."""
    sns = record.get("Sns") or {}
    subject = str(sns.get("Subject") or "")
    message = str(sns.get("Message") or "")
    topic_arn = str(sns.get("TopicArn") or "")
    try:
        payload = json.loads(message)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        if payload.get("source") == IDLE_MONITOR_SOURCE:
            return idle_monitor_message(payload)
        if payload.get("detail-type") == CONFIG_DETAIL_TYPE:
            return config_compliance_message(payload)
        formatter = _FINDING_FORMATTERS.get(str(payload.get("detail-type")))
        if formatter is not None and isinstance(payload.get("detail"), dict):
            return formatter(payload)
        if "AlarmName" in payload and "NewStateValue" in payload:
            if _cis_control(payload) is not None:
                return cis_alarm_message(payload)
            return alarm_message(payload)
    if subject.startswith("AWS Budgets:") or message.lstrip().startswith("AWS Budget Notification"):
        return budget_message(subject, message)
    return plain_message(subject, message, topic_arn)


def idle_monitor_message(payload: Mapping[str, Any]) -> SlackMessage:
    blocks = payload.get("blocks")
    channel = payload.get("channel")
    return SlackMessage(
        source="idle_monitor",
        text=str(payload.get("text") or "Idle monitor report"),
        blocks=list(blocks) if isinstance(blocks, list) else [],
        channel=channel if isinstance(channel, str) and channel else None,
    )


def config_compliance_message(event: Mapping[str, Any]) -> SlackMessage:
    detail = event.get("detail") or {}
    new = detail.get("newEvaluationResult") or {}
    old = detail.get("oldEvaluationResult") or {}
    qualifier = (new.get("evaluationResultIdentifier") or {}).get("evaluationResultQualifier") or {}
    rule = str(detail.get("configRuleName") or qualifier.get("configRuleName") or "?")
    resource_id = str(detail.get("resourceId") or qualifier.get("resourceId") or "?")
    resource_type = str(detail.get("resourceType") or qualifier.get("resourceType") or "?")
    account = str(detail.get("awsAccountId") or event.get("account") or "?")
    region = str(detail.get("awsRegion") or event.get("region") or "")
    compliance = str(new.get("complianceType") or "UNKNOWN")
    previous = old.get("complianceType")
    changed_by = event.get("changedBy") or detail.get("changedBy")
    annotation = new.get("annotation")

    icon = _COMPLIANCE_ICON.get(compliance, ":white_circle:")
    was = f" (was {previous})" if previous else ""
    headline = f"{icon} {resource_type} {resource_id} is {compliance} with Config rule {rule}{was}"
    lines = [f"Account {account}{' ' + region if region else ''}"]
    if annotation:
        lines.append(f"Finding: {annotation}")
    if changed_by:
        lines.append(f"Changed by: {changed_by}")
    links = [("resource", resource_console_url(resource_type, resource_id, region))]
    links.append(("rule", _console(region, "config", f"/rules/details?configRuleName={_q(rule)}")))
    return _message("config_compliance", headline, lines, links)


def alarm_message(alarm: Mapping[str, Any]) -> SlackMessage:
    name = str(alarm.get("AlarmName"))
    state = str(alarm.get("NewStateValue"))
    previous = alarm.get("OldStateValue")
    arn = str(alarm.get("AlarmArn") or "")
    region, arn_account = _arn_region_account(arn)
    account = str(alarm.get("AWSAccountId") or arn_account or "?")
    where = str(alarm.get("Region") or region)

    was = f" (was {previous})" if previous else ""
    headline = f"{_ALARM_ICON.get(state, ':bell:')} CloudWatch alarm {name} is {state}{was}"
    lines = [f"Account {account} {where}".rstrip()]
    if alarm.get("AlarmDescription"):
        lines.append(str(alarm["AlarmDescription"]))
    if alarm.get("NewStateReason"):
        lines.append(f"Reason: {alarm['NewStateReason']}")
    trigger = alarm.get("Trigger") or {}
    if trigger.get("MetricName"):
        dimensions = ", ".join(f"{d.get('name')}={d.get('value')}" for d in trigger.get("Dimensions") or [])
        lines.append(
            f"Metric: {trigger.get('Namespace')} {trigger['MetricName']}" + (f" ({dimensions})" if dimensions else "")
        )
    links = [("alarm", _console(region, "cloudwatch", f"alarmsV2:alarm/{_q(name)}"))] if region else []
    return _message("cloudwatch_alarm", headline, lines, links)


def guardduty_message(event: Mapping[str, Any]) -> SlackMessage:
    detail = event.get("detail") or {}
    severity = _float(detail.get("severity"))
    account = str(detail.get("accountId") or event.get("account") or "?")
    region = str(detail.get("region") or event.get("region") or "")
    title = str(detail.get("title") or detail.get("type") or "GuardDuty finding")
    headline = (
        f"{_SEVERITY_ICON.get(guardduty_severity(severity), ':warning:')} GuardDuty {guardduty_severity(severity)}"
    )
    headline += f" ({severity:g}): {title}"
    lines = [f"Account {account} {region}".rstrip(), f"Type: {detail.get('type') or '?'}"]
    resource = _guardduty_resource(detail.get("resource") or {})
    if resource:
        lines.append(f"Resource: {resource}")
    if detail.get("description"):
        lines.append(str(detail["description"]))
    service = detail.get("service") or {}
    if service.get("count"):
        lines.append(f"Seen {service['count']} time(s), last at {service.get('eventLastSeen') or '?'}")
    # The finding's console link as GuardDuty's EventBridge documentation builds it.
    fragment = f"/findings?search=id={_q(str(detail.get('id') or ''))}"
    return _message("guardduty", headline, lines, [("finding", _console(region, "guardduty", fragment))])


def guardduty_severity(severity: float) -> str:
    """GuardDuty's bands (guardduty_findings-severity.html): 9.0-10.0 critical, 7.0-8.9 high, 4.0-6.9 medium."""
    if severity >= 9:
        return "CRITICAL"
    if severity >= 7:
        return "HIGH"
    return "MEDIUM" if severity >= 4 else "LOW"


def _guardduty_resource(resource: Mapping[str, Any]) -> str:
    kind = str(resource.get("resourceType") or "")
    key = resource.get("accessKeyDetails") or {}
    instance = resource.get("instanceDetails") or {}
    buckets = [str(b.get("name")) for b in resource.get("s3BucketDetails") or [] if b.get("name")]
    if kind == "AccessKey" and key:
        return f"access key {key.get('accessKeyId') or '?'} of {key.get('userType') or ''} {key.get('userName') or '?'}"
    if instance.get("instanceId"):
        return f"{kind or 'Instance'} {instance['instanceId']}"
    if buckets:
        return f"{kind or 'S3Bucket'} {', '.join(buckets)}"
    return kind


def security_hub_message(event: Mapping[str, Any]) -> SlackMessage:
    findings = [f for f in (event.get("detail") or {}).get("findings") or [] if isinstance(f, dict)]
    region = str(event.get("region") or "")
    if not findings:
        return _message("security_hub", "Security Hub: an import with no findings", [], [])
    first = findings[0]
    label = str((first.get("Severity") or {}).get("Label") or "?")
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    headline = f"{_SEVERITY_ICON.get(label, ':warning:')} Security Hub {label}: {first.get('Title') or '?'}{more}"
    lines: list[str] = []
    links: list[tuple[str, str]] = []
    for finding in findings:
        where = str(finding.get("Region") or region)
        lines.append(f"Account {finding.get('AwsAccountId') or event.get('account') or '?'} {where}".rstrip())
        if len(findings) > 1:
            lines.append(f"[{(finding.get('Severity') or {}).get('Label') or '?'}] {finding.get('Title') or '?'}")
        for resource in finding.get("Resources") or []:
            lines.append(f"Resource: {resource.get('Type') or '?'} {resource.get('Id') or '?'}")
        control = (finding.get("Compliance") or {}).get("SecurityControlId")
        product = finding.get("ProductName")
        if control or product:
            lines.append(f"From: {product or '?'}" + (f", control {control}" if control else ""))
        if finding.get("Description"):
            lines.append(str(finding["Description"]))
        recommendation = (finding.get("Remediation") or {}).get("Recommendation") or {}
        if recommendation.get("Text"):
            lines.append(f"Fix: {recommendation['Text']}")
        if recommendation.get("Url"):
            links.append(("remediation", str(recommendation["Url"])))
    links.append(("findings", _console(region, "securityhub", "/findings")))
    return _message("security_hub", headline, lines, links)


def access_analyzer_message(event: Mapping[str, Any]) -> SlackMessage:
    detail = event.get("detail") or {}
    account = str(detail.get("accountId") or event.get("account") or "?")
    region = str(detail.get("region") or event.get("region") or "")
    resource = str(detail.get("resource") or "?")
    principal = detail.get("principal") or {}
    who = "the public" if detail.get("isPublic") else ", ".join(f"{k} {v}" for k, v in principal.items()) or "?"
    status = str(detail.get("status") or "?")
    headline = f":unlock: Access Analyzer: {detail.get('resourceType') or '?'} {resource} is shared with {who}"
    lines = [f"Account {account} {region}".rstrip(), f"Status: {status}"]
    if detail.get("action"):
        lines.append(f"Actions: {', '.join(str(a) for a in detail['action'])}")
    if detail.get("condition"):
        lines.append(f"Condition: {json.dumps(detail['condition'], sort_keys=True)}")
    if detail.get("error"):
        lines.append(f"Error: {detail['error']}")
    return _message(
        "access_analyzer", headline, lines, [("findings", _console(region, "access-analyzer", "/findings"))]
    )


def cis_alarm_message(alarm: Mapping[str, Any]) -> SlackMessage:
    """A CIS alarm says which control and what changed, and links to where the events are."""
    control, what = _cis_control(alarm) or ("?", "?")
    state = str(alarm.get("NewStateValue"))
    region, arn_account = _arn_region_account(str(alarm.get("AlarmArn") or ""))
    account = str(alarm.get("AWSAccountId") or arn_account or "?")
    name = str(alarm.get("AlarmName"))
    if state == "ALARM":
        headline = f":rotating_light: CIS {control}: {what} (alarm {name})"
    else:
        headline = f"{_ALARM_ICON.get(state, ':bell:')} CIS {control}: alarm {name} is {state}"
    lines = [f"Account {account} {alarm.get('Region') or region}".rstrip()]
    if alarm.get("NewStateReason"):
        lines.append(f"Reason: {alarm['NewStateReason']}")
    if state == "ALARM":
        lines.append("Who did it and what: the trail's events of the last minutes (CloudTrail event history).")
    links = []
    if region:
        links = [
            ("alarm", _console(region, "cloudwatch", f"alarmsV2:alarm/{_q(name)}")),
            ("events", _console(region, "cloudtrail", "/events")),
        ]
    return _message("cis_alarm", headline, lines, links)


_CIS_DESCRIPTION = re.compile(r"^(CloudWatch\.\d+|CIS [\d.]+): (.+?)\.(?: |$)")
CIS_NAMESPACE = "LogMetrics"


def _cis_control(alarm: Mapping[str, Any]) -> tuple[str, str] | None:
    trigger = alarm.get("Trigger") or {}
    if not isinstance(trigger, dict) or trigger.get("Namespace") != CIS_NAMESPACE:
        return None
    match = _CIS_DESCRIPTION.match(str(alarm.get("AlarmDescription") or ""))
    return (match.group(1), match.group(2)) if match else None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


_SEVERITY_ICON = {"CRITICAL": ":red_circle:", "HIGH": ":large_orange_circle:", "MEDIUM": ":large_yellow_circle:"}
_FINDING_FORMATTERS = {
    "GuardDuty Finding": guardduty_message,
    "Security Hub Findings - Imported": security_hub_message,
    "Access Analyzer Finding": access_analyzer_message,
}


_BUDGET_FIELDS = ("Budget Name", "Budget Type", "Budgeted Amount", "Alert Type", "Alert Threshold")


def budget_message(subject: str, message: str) -> SlackMessage:
    """AWS Budgets sends plain text; pick out the fields people act on and keep the full text when parsing fails."""
    fields = dict(re.findall(r"^\s*([A-Za-z ]+?):\s*(.+?)\s*$", message, flags=re.MULTILINE))
    account_match = re.search(r"AWS Account (\d{12})", message)
    account = account_match.group(1) if account_match else "?"
    name = fields.get("Budget Name")
    if not name:
        text = f":money_with_wings: {subject or 'AWS Budgets notification'}\n{message.strip()}"
        return SlackMessage(source="budget", text=text)
    alert_type = fields.get("Alert Type", "")
    amount = fields.get(f"{alert_type} Amount") if alert_type else None
    headline = f":money_with_wings: Budget {name}: {alert_type.lower() or 'spend'} {amount or '?'} crossed the alert"
    headline += f" threshold {fields.get('Alert Threshold', '?')} (budget {fields.get('Budgeted Amount', '?')})"
    lines = [f"Account {account}"]
    if subject:
        lines.append(subject)
    link = f"https://console.aws.amazon.com/costmanagement/home#/budgets/details?name={_q(name)}"
    return _message("budget", headline, lines, [("budget", link)])


def plain_message(subject: str, message: str, topic_arn: str) -> SlackMessage:
    """Unknown events: delivered as they came, with the topic so readers know where to look."""
    topic = topic_arn.rsplit(":", 1)[-1] if topic_arn else "unknown topic"
    _, account = _arn_region_account(topic_arn)
    origin = f"[{topic}{' in ' + account if account else ''}]"
    head = f"{origin} {subject}".strip()
    return SlackMessage(source="plain", text=f"{head}\n{message}" if message else head)


def resource_console_url(resource_type: str, resource_id: str, region: str) -> str:
    """The best console page for a resource: EC2 pages for groups and instances, else Config's resource view."""
    if resource_type == "AWS::EC2::SecurityGroup":
        return _console(region, "ec2", f"SecurityGroup:groupId={_q(resource_id)}")
    if resource_type == "AWS::EC2::Instance":
        return _console(region, "ec2", f"InstanceDetails:instanceId={_q(resource_id)}")
    query = f"resourceId={_q(resource_id)}&resourceType={_q(resource_type)}"
    return _console(region, "config", f"/resources/details?{query}")


def escape(text: str) -> str:
    """Slack mrkdwn control characters; everything from AWS is data, never markup or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _message(source: str, headline: str, lines: list[str], links: list[tuple[str, str]]) -> SlackMessage:
    link_text = " | ".join(f"<{url}|{label}>" for label, url in links)
    body = "\n".join(escape(line) for line in lines)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(headline)}*\n{body}"}},
    ]
    if link_text:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Console: {link_text}"}]})
    fallback = "\n".join([headline, *lines, *(url for _, url in links)])
    return SlackMessage(source=source, text=fallback, blocks=blocks)


def _console(region: str, service: str, fragment: str) -> str:
    host = f"{region}.console.aws.amazon.com" if region else "console.aws.amazon.com"
    query = f"?region={region}" if region else ""
    return f"https://{host}/{service}/home{query}#{fragment}"


def _arn_region_account(arn: str) -> tuple[str, str]:
    match = _ARN_ACCOUNT.match(arn)
    return (match.group(1), match.group(2)) if match else ("", "")


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# CloudTrail events that change who may reach a security group; the newest one names who opened it.
SECURITY_GROUP_CHANGES = frozenset(
    {
        "AuthorizeSecurityGroupIngress",
        "ModifySecurityGroupRules",
        "CreateSecurityGroup",
        "UpdateSecurityGroupRuleDescriptionsIngress",
    }
)


def security_group_to_attribute(event: Mapping[str, Any]) -> str | None:
    """The group ID of a Config compliance change that should name its author, or None.

    Only NON_COMPLIANT security groups, and only when nothing upstream already said who changed it.
    """
    if event.get("detail-type") != CONFIG_DETAIL_TYPE:
        return None
    detail = event.get("detail") or {}
    if event.get("changedBy") or detail.get("changedBy"):
        return None
    new = detail.get("newEvaluationResult") or {}
    qualifier = (new.get("evaluationResultIdentifier") or {}).get("evaluationResultQualifier") or {}
    resource_type = detail.get("resourceType") or qualifier.get("resourceType")
    resource_id = detail.get("resourceId") or qualifier.get("resourceId")
    if resource_type != "AWS::EC2::SecurityGroup" or new.get("complianceType") != "NON_COMPLIANT":
        return None
    return str(resource_id) if resource_id else None


def change_author(cloudtrail_events: list[Mapping[str, Any]]) -> str | None:
    """From CloudTrail LookupEvents results for one group, who made the newest rule change, and when.

    Prefers the principal ARN inside the raw event (an assumed role names the session, i.e. the person) over the
    short user name; returns None when CloudTrail has no such change in its 90-day history.
    """
    changes = [e for e in cloudtrail_events if e.get("EventName") in SECURITY_GROUP_CHANGES]
    if not changes:
        return None
    newest = max(changes, key=lambda e: str(e.get("EventTime") or ""))
    who = str(newest.get("Username") or "unknown principal")
    try:
        identity = json.loads(str(newest.get("CloudTrailEvent") or "{}")).get("userIdentity") or {}
        who = str(identity.get("arn") or who)
    except ValueError:
        pass
    when: Any = newest.get("EventTime")
    when_text = when.isoformat() if isinstance(when, datetime) else str(when or "")
    return f"{who} ({newest['EventName']}{' at ' + when_text if when_text else ''})"
