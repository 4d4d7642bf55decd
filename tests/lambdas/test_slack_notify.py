"""SNS -> Slack notifier: one formatter per source, and the handler posting to a local Slack server with the
secret in moto's Secrets Manager; failures are retried and then raised, never swallowed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.common.slack import SlackError
from lambdas.slack_notify import handler as notify
from lambdas.slack_notify.logic import format_record
from tests.conftest import LoopbackHandler, SlackServer, client, loopback_server
from tests.lambdas.conftest import FakeContext

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:ap-northeast-1:{ACCOUNT}:mlbase-notifications"

BUDGET_TEXT = f"""AWS Budget Notification November 27, 2026
AWS Account {ACCOUNT}

Dear AWS Customer,

You requested that we alert you when the ACTUAL Cost associated with your mlbase-research budget is greater than \
80.00% of $1,000.00 for the current month. The ACTUAL Cost associated with this budget is $812.34. You can find \
additional details below and by accessing the AWS Budgets dashboard [1].

Budget Name: mlbase-research
Budget Type: Cost
Budgeted Amount: $1,000.00
Alert Type: ACTUAL
Alert Threshold: > $800.00
ACTUAL Amount: $812.34

[1] https://console.aws.amazon.com/billing/home#/budgets
"""

CONFIG_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "0f3c3c3c-1111-2222-3333-444455556666",
    "detail-type": "Config Rules Compliance Change",
    "source": "aws.config",
    "account": ACCOUNT,
    "time": "2026-11-27T10:00:00Z",
    "region": "ap-northeast-1",
    "resources": [],
    "detail": {
        "resourceId": "sg-0123456789abcdef0",
        "awsRegion": "ap-northeast-1",
        "awsAccountId": ACCOUNT,
        "configRuleName": "sg-open-world",
        "recordVersion": "1.0",
        "configRuleARN": f"arn:aws:config:ap-northeast-1:{ACCOUNT}:config-rule/config-rule-abc",
        "messageType": "ComplianceChangeNotification",
        "newEvaluationResult": {
            "evaluationResultIdentifier": {
                "evaluationResultQualifier": {
                    "configRuleName": "sg-open-world",
                    "resourceType": "AWS::EC2::SecurityGroup",
                    "resourceId": "sg-0123456789abcdef0",
                },
                "orderingTimestamp": "2026-11-27T09:59:58.000Z",
            },
            "complianceType": "NON_COMPLIANT",
            "resultRecordedTime": "2026-11-27T09:59:59.000Z",
            "configRuleInvokedTime": "2026-11-27T09:59:58.500Z",
            "annotation": "[S5] tcp 22 from 0.0.0.0/0 exposes sensitive port 22",
        },
        "oldEvaluationResult": {"complianceType": "COMPLIANT"},
        "notificationCreationTime": "2026-11-27T10:00:00.000Z",
        "resourceType": "AWS::EC2::SecurityGroup",
    },
}

ALARM: dict[str, Any] = {
    "AlarmName": "PhotoService-DLQ-Depth",
    "AlarmDescription": "Messages in the photo DLQ",
    "AWSAccountId": ACCOUNT,
    "AlarmConfigurationUpdatedTimestamp": "2026-11-27T09:00:00.000+0000",
    "NewStateValue": "ALARM",
    "NewStateReason": "Threshold Crossed: 1 datapoint [3.0 (27/11/26 09:59:00)] was greater than the threshold (0.0).",
    "StateChangeTime": "2026-11-27T10:00:00.000+0000",
    "Region": "Asia Pacific (Tokyo)",
    "AlarmArn": f"arn:aws:cloudwatch:ap-northeast-1:{ACCOUNT}:alarm:PhotoService-DLQ-Depth",
    "OldStateValue": "OK",
    "OKActions": [],
    "AlarmActions": [TOPIC],
    "InsufficientDataActions": [],
    "Trigger": {
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Namespace": "AWS/SQS",
        "StatisticType": "Statistic",
        "Statistic": "MAXIMUM",
        "Unit": None,
        "Dimensions": [{"value": "photo-dlq", "name": "QueueName"}],
        "Period": 60,
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 0.0,
    },
}


def sns_record(message: str, subject: str | None = None) -> dict[str, Any]:
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{TOPIC}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": TOPIC,
            "Subject": subject,
            "Message": message,
            "Timestamp": "2026-11-27T10:00:00.000Z",
            "SignatureVersion": "1",
            "MessageAttributes": {},
        },
    }


def sns_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


# --- formatting ---------------------------------------------------------------------------------------------


def test_budget_notification() -> None:
    message = format_record(sns_record(BUDGET_TEXT, "AWS Budgets: mlbase-research has exceeded your alert threshold"))
    assert message.source == "budget"
    assert message.text == (
        ":money_with_wings: Budget mlbase-research: actual $812.34 crossed the alert threshold > $800.00 "
        "(budget $1,000.00)\n"
        f"Account {ACCOUNT}\n"
        "AWS Budgets: mlbase-research has exceeded your alert threshold\n"
        "https://console.aws.amazon.com/costmanagement/home#/budgets/details?name=mlbase-research"
    )
    section = message.blocks[0]["text"]["text"]
    assert section.startswith(
        "*:money_with_wings: Budget mlbase-research: actual $812.34 crossed the alert threshold &gt; $800.00"
    )
    assert message.blocks[1]["elements"][0]["text"] == (
        "Console: <https://console.aws.amazon.com/costmanagement/home#/budgets/details?name=mlbase-research|budget>"
    )


def test_budget_notification_that_does_not_parse_keeps_the_text() -> None:
    message = format_record(sns_record("AWS Budget Notification\nsomething new from AWS", "AWS Budgets: x"))
    assert message.source == "budget"
    assert message.text == ":money_with_wings: AWS Budgets: x\nAWS Budget Notification\nsomething new from AWS"
    assert message.blocks == []


def test_config_compliance_change() -> None:
    message = format_record(sns_record(json.dumps(CONFIG_EVENT)))
    assert message.source == "config_compliance"
    ec2_link = (
        "https://ap-northeast-1.console.aws.amazon.com/ec2/home?region=ap-northeast-1"
        "#SecurityGroup:groupId=sg-0123456789abcdef0"
    )
    rule_link = (
        "https://ap-northeast-1.console.aws.amazon.com/config/home?region=ap-northeast-1"
        "#/rules/details?configRuleName=sg-open-world"
    )
    assert message.text == "\n".join(
        [
            ":red_circle: AWS::EC2::SecurityGroup sg-0123456789abcdef0 is NON_COMPLIANT with Config rule "
            "sg-open-world (was COMPLIANT)",
            f"Account {ACCOUNT} ap-northeast-1",
            "Finding: [S5] tcp 22 from 0.0.0.0/0 exposes sensitive port 22",
            ec2_link,
            rule_link,
        ]
    )
    assert message.blocks[1]["elements"][0]["text"] == f"Console: <{ec2_link}|resource> | <{rule_link}|rule>"


@pytest.mark.parametrize("where", ["top", "detail"])
def test_config_compliance_change_names_who_changed_it(where: str) -> None:
    event = json.loads(json.dumps(CONFIG_EVENT))
    who = f"arn:aws:sts::{ACCOUNT}:assumed-role/Researcher/alice"
    (event if where == "top" else event["detail"])["changedBy"] = who
    message = format_record(sns_record(json.dumps(event)))
    assert f"Changed by: {who}" in message.text.splitlines()


def test_config_back_to_compliant() -> None:
    event = json.loads(json.dumps(CONFIG_EVENT))
    event["detail"]["newEvaluationResult"]["complianceType"] = "COMPLIANT"
    event["detail"]["newEvaluationResult"].pop("annotation")
    event["detail"]["oldEvaluationResult"]["complianceType"] = "NON_COMPLIANT"
    message = format_record(sns_record(json.dumps(event)))
    assert message.text.splitlines()[0] == (
        ":large_green_circle: AWS::EC2::SecurityGroup sg-0123456789abcdef0 is COMPLIANT with Config rule "
        "sg-open-world (was NON_COMPLIANT)"
    )
    assert not any(line.startswith("Finding:") for line in message.text.splitlines())


def test_config_other_resource_links_to_config_console() -> None:
    event = json.loads(json.dumps(CONFIG_EVENT))
    event["detail"]["resourceType"] = "AWS::S3::Bucket"
    event["detail"]["resourceId"] = "my bucket"
    message = format_record(sns_record(json.dumps(event)))
    assert (
        "https://ap-northeast-1.console.aws.amazon.com/config/home?region=ap-northeast-1"
        "#/resources/details?resourceId=my%20bucket&resourceType=AWS%3A%3AS3%3A%3ABucket"
    ) in message.text


def test_cloudwatch_alarm() -> None:
    message = format_record(sns_record(json.dumps(ALARM), 'ALARM: "PhotoService-DLQ-Depth" in Asia Pacific (Tokyo)'))
    assert message.source == "cloudwatch_alarm"
    assert message.text == "\n".join(
        [
            ":rotating_light: CloudWatch alarm PhotoService-DLQ-Depth is ALARM (was OK)",
            f"Account {ACCOUNT} Asia Pacific (Tokyo)",
            "Messages in the photo DLQ",
            "Reason: " + ALARM["NewStateReason"],
            "Metric: AWS/SQS ApproximateNumberOfMessagesVisible (QueueName=photo-dlq)",
            "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1"
            "#alarmsV2:alarm/PhotoService-DLQ-Depth",
        ]
    )


def test_alarm_back_to_ok() -> None:
    message = format_record(sns_record(json.dumps({**ALARM, "NewStateValue": "OK", "OldStateValue": "ALARM"})))
    assert (
        message.text.splitlines()[0] == ":white_check_mark: CloudWatch alarm PhotoService-DLQ-Depth is OK (was ALARM)"
    )


def test_idle_monitor_passes_through() -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "<@U123> i-0abc idle for 3 h"}}]
    payload = {
        "source": "mlbase.idle_monitor",
        "text": "<@U123> i-0abc idle for 3 h",
        "blocks": blocks,
        "channel": "C9",
    }
    message = format_record(sns_record(json.dumps(payload)))
    assert (message.source, message.text, message.blocks, message.channel) == (
        "idle_monitor",
        "<@U123> i-0abc idle for 3 h",
        blocks,
        "C9",
    )


def test_unknown_text_is_delivered_as_is() -> None:
    message = format_record(sns_record("deploy finished <ok>", "Pipeline"))
    assert (message.source, message.text, message.blocks) == (
        "plain",
        f"[mlbase-notifications in {ACCOUNT}] Pipeline\ndeploy finished <ok>",
        [],
    )


def test_unknown_json_is_delivered_as_plain_text() -> None:
    body = json.dumps({"detail-type": "EC2 Instance State-change Notification", "detail": {"state": "stopped"}})
    message = format_record(sns_record(body))
    assert (message.source, message.text) == ("plain", f"[mlbase-notifications in {ACCOUNT}]\n{body}")


def test_aws_text_cannot_inject_mentions_or_links() -> None:
    event = json.loads(json.dumps(CONFIG_EVENT))
    event["detail"]["newEvaluationResult"]["annotation"] = "<!channel> see <https://evil.example|here> & more"
    section = format_record(sns_record(json.dumps(event))).blocks[0]["text"]["text"]
    assert "Finding: &lt;!channel&gt; see &lt;https://evil.example|here&gt; &amp; more" in section
    assert "<!channel>" not in section


# --- handler: moto Secrets Manager + local Slack server ----------------------------------------------------


@pytest.fixture
def configure(
    aws: str, monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer, waits: list[float]
) -> Iterator[Any]:
    """Returns a function that stores a Slack secret in moto and points the handler at it (retry waits not slept)."""

    def make(secret: dict[str, str]) -> str:
        arn: str = client("secretsmanager", aws).create_secret(Name="mlbase/slack", SecretString=json.dumps(secret))[
            "ARN"
        ]
        monkeypatch.setenv("MLBASE_SLACK_SECRET_ARN", arn)
        monkeypatch.setenv("MLBASE_SLACK_API_BASE", slack_server.url)
        monkeypatch.setenv("MLBASE_SLACK_MAX_ATTEMPTS", "3")
        notify.settings.cache_clear()
        return arn

    yield make
    notify.settings.cache_clear()


def test_webhook_delivery(configure: Any, slack_server: SlackServer) -> None:
    configure({"webhook_url": f"{slack_server.url}/services/T000/B000/XXXX"})
    result = notify.handler(sns_event(sns_record(json.dumps(ALARM))), FakeContext())
    assert result == {"delivered": ["cloudwatch_alarm"]}
    [request] = slack_server.requests
    assert request.path == "/services/T000/B000/XXXX"
    payload = request.json()
    assert payload["text"].startswith(":rotating_light: CloudWatch alarm PhotoService-DLQ-Depth is ALARM")
    assert payload["blocks"][0]["type"] == "section"
    assert "channel" not in payload


def test_bot_token_delivery(configure: Any, slack_server: SlackServer) -> None:
    configure({"bot_token": "xoxb-123", "channel": "C0PLATFORM"})
    notify.handler(sns_event(sns_record(BUDGET_TEXT, "AWS Budgets: mlbase-research has exceeded")), FakeContext())
    [request] = slack_server.requests
    assert request.path == "/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-123"
    assert request.json()["channel"] == "C0PLATFORM"
    assert request.json()["text"].startswith(":money_with_wings: Budget mlbase-research")


def test_idle_monitor_channel_overrides_default(configure: Any, slack_server: SlackServer) -> None:
    configure({"bot_token": "xoxb-123", "channel": "C0PLATFORM"})
    payload = {"source": "mlbase.idle_monitor", "text": "i-0abc idle", "channel": "C0RESEARCH"}
    notify.handler(sns_event(sns_record(json.dumps(payload))), FakeContext())
    assert slack_server.requests[0].json() == {"text": "i-0abc idle", "channel": "C0RESEARCH"}


def test_plain_text_delivery_has_no_blocks(configure: Any, slack_server: SlackServer) -> None:
    configure({"webhook_url": slack_server.url})
    notify.handler(sns_event(sns_record("hello", "Hi")), FakeContext())
    assert slack_server.requests[0].json() == {"text": f"[mlbase-notifications in {ACCOUNT}] Hi\nhello"}


def test_rate_limited_then_delivered(configure: Any, slack_server: SlackServer) -> None:
    configure({"webhook_url": slack_server.url})
    slack_server.responses.extend([(429, b"rate_limited"), (503, b"unavailable"), (200, b"ok")])
    assert notify.handler(sns_event(sns_record("x")), FakeContext()) == {"delivered": ["plain"]}
    assert len(slack_server.requests) == 3


def test_persistent_failure_raises_for_the_dlq(configure: Any, slack_server: SlackServer) -> None:
    configure({"webhook_url": slack_server.url})
    slack_server.responses.extend([(500, b"internal_error")] * 3)
    with pytest.raises(SlackError, match=r"slack error: internal_error \(HTTP 500\)"):
        notify.handler(sns_event(sns_record("x")), FakeContext())
    assert len(slack_server.requests) == 3


def test_rejected_message_raises_at_once(configure: Any, slack_server: SlackServer) -> None:
    configure({"bot_token": "xoxb-revoked", "channel": "C1"})
    slack_server.responses.append((200, b'{"ok": false, "error": "token_revoked"}'))
    with pytest.raises(SlackError, match="token_revoked"):
        notify.handler(sns_event(sns_record("x")), FakeContext())
    assert len(slack_server.requests) == 1


def test_secret_is_read_once_per_container(configure: Any, slack_server: SlackServer, aws: str) -> None:
    arn = configure({"webhook_url": f"{slack_server.url}/first"})
    notify.handler(sns_event(sns_record("one")), FakeContext())
    client("secretsmanager", aws).put_secret_value(SecretId=arn, SecretString=json.dumps({"webhook_url": "https://x"}))
    notify.handler(sns_event(sns_record("two")), FakeContext())
    assert [r.path for r in slack_server.requests] == ["/first", "/first"]


def test_malformed_secret_fails_loudly(configure: Any) -> None:
    configure({"token": "xoxb-123"})
    with pytest.raises(ValueError, match="the Slack secret must hold"):
        notify.handler(sns_event(sns_record("x")), FakeContext())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MLBASE_SLACK_SECRET_ARN must name the Slack secret"),
        ({"MLBASE_SLACK_MAX_ATTEMPTS": "0"}, "MLBASE_SLACK_MAX_ATTEMPTS must be an integer in 1..10, got '0'"),
        ({"MLBASE_SLACK_MAX_ATTEMPTS": "2.5"}, "MLBASE_SLACK_MAX_ATTEMPTS must be an integer in 1..10, got '2.5'"),
        ({"MLBASE_SLACK_MAX_DELAY_SECONDS": "soon"}, "MLBASE_SLACK_MAX_DELAY_SECONDS must be a number in 0..60"),
    ],
)
def test_bad_configuration_is_refused(env: dict[str, str], message: str) -> None:
    base = {"MLBASE_SLACK_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:slack"} if env else {}
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        notify.Settings.from_env({**base, **env})


def test_default_configuration() -> None:
    settings = notify.Settings.from_env({"MLBASE_SLACK_SECRET_ARN": "arn:secret"})
    assert settings.api_base == "https://slack.com/api"
    assert (settings.retry.attempts, settings.retry.max_delay) == (4, 8.0)


# --- who changed the group: CloudTrail LookupEvents -----------------------------------------------------------

ALICE = f"arn:aws:sts::{ACCOUNT}:assumed-role/mlbase-ResearchDeveloper/alice"


def trail_event(name: str, when: float, arn: str | None = ALICE, username: str = "alice") -> dict[str, Any]:
    raw = {"eventName": name, "userIdentity": {"arn": arn} if arn else {}}
    return {"EventId": f"e-{when}", "EventName": name, "EventTime": when, "Username": username,
            "CloudTrailEvent": json.dumps(raw)}  # fmt: skip


def test_only_non_compliant_security_groups_without_an_author_are_looked_up() -> None:
    from lambdas.slack_notify.logic import security_group_to_attribute

    assert security_group_to_attribute(CONFIG_EVENT) == "sg-0123456789abcdef0"
    compliant = json.loads(json.dumps(CONFIG_EVENT))
    compliant["detail"]["newEvaluationResult"]["complianceType"] = "COMPLIANT"
    assert security_group_to_attribute(compliant) is None
    known = {**CONFIG_EVENT, "changedBy": "someone"}
    assert security_group_to_attribute(known) is None
    bucket = json.loads(json.dumps(CONFIG_EVENT))
    bucket["detail"]["resourceType"] = "AWS::S3::Bucket"
    bucket["detail"]["newEvaluationResult"]["evaluationResultIdentifier"]["evaluationResultQualifier"][
        "resourceType"
    ] = "AWS::S3::Bucket"
    assert security_group_to_attribute(bucket) is None
    assert security_group_to_attribute(ALARM) is None


def test_change_author_is_the_newest_rule_change() -> None:
    from datetime import UTC, datetime

    from lambdas.slack_notify.logic import change_author

    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    t1 = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    events = [
        {**trail_event("AuthorizeSecurityGroupIngress", 0, arn="arn:aws:iam::1:user/bob"), "EventTime": t0},
        {**trail_event("AuthorizeSecurityGroupIngress", 0), "EventTime": t1},
        {**trail_event("DescribeSecurityGroups", 0, arn="arn:aws:iam::1:user/reader"), "EventTime": t1},
    ]
    assert change_author(events) == f"{ALICE} (AuthorizeSecurityGroupIngress at 2026-11-27T09:30:00+00:00)"
    assert change_author([trail_event("DescribeSecurityGroups", 0)]) is None
    assert change_author([]) is None
    no_arn = {**trail_event("CreateSecurityGroup", 0, arn=None, username="ci-bot"), "EventTime": t0}
    assert change_author([no_arn]).startswith("ci-bot (CreateSecurityGroup")  # type: ignore[union-attr]


@pytest.fixture
def cloudtrail(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A loopback proxy in front of moto that answers CloudTrail LookupEvents (which moto lacks) from a script.

    Every other request is forwarded to moto unchanged, so Secrets Manager still runs on the real moto server.
    """
    import urllib.error
    import urllib.request

    state: dict[str, Any] = {"events": [], "lookups": [], "status": 200}

    class Proxy(LoopbackHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server names)
            body = self.body()
            if "LookupEvents" in (self.headers.get("X-Amz-Target") or ""):
                state["lookups"].append(json.loads(body))
                status = state["status"]
                payload = json.dumps(
                    {"Events": state["events"]} if status == 200 else {"__type": "AccessDeniedException"}
                ).encode()
                self.reply(status, payload, {"Content-Type": "application/x-amz-json-1.1"})
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
            request = urllib.request.Request(moto_server + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.reply(
                        response.status, response.read(), {"Content-Type": response.headers.get("Content-Type", "")}
                    )
            except urllib.error.HTTPError as err:
                self.reply(err.code, err.read(), {"Content-Type": err.headers.get("Content-Type", "")})

    with loopback_server(Proxy) as url:
        monkeypatch.setenv("MLBASE_ENDPOINT_URL", url)
        yield state


def test_finding_names_who_opened_the_group_from_cloudtrail(
    configure: Any, cloudtrail: dict[str, Any], slack_server: SlackServer
) -> None:
    configure({"webhook_url": slack_server.url})
    cloudtrail["events"] = [
        trail_event("AuthorizeSecurityGroupIngress", 1_795_000_000.0),
        trail_event("DescribeSecurityGroups", 1_795_000_100.0, arn="arn:aws:iam::1:user/reader"),
    ]
    notify.handler(sns_event(sns_record(json.dumps(CONFIG_EVENT))), FakeContext())
    assert cloudtrail["lookups"] == [
        {"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "sg-0123456789abcdef0"}],
         "MaxResults": 50}
    ]  # fmt: skip
    text = slack_server.requests[0].json()["text"]
    assert f"Changed by: {ALICE} (AuthorizeSecurityGroupIngress at 2026-11-18T11:06:40" in text


def test_finding_is_still_delivered_when_cloudtrail_refuses(
    configure: Any, cloudtrail: dict[str, Any], slack_server: SlackServer
) -> None:
    configure({"webhook_url": slack_server.url})
    cloudtrail["status"] = 400
    result = notify.handler(sns_event(sns_record(json.dumps(CONFIG_EVENT))), FakeContext())
    assert result == {"delivered": ["config_compliance"]}
    text = slack_server.requests[0].json()["text"]
    assert "sg-0123456789abcdef0 is NON_COMPLIANT" in text
    assert "Changed by" not in text


# --- security findings and CIS alarms (events shaped as in AWS's documented examples) ---------------------------

# GuardDuty finding event: the envelope of guardduty/latest/ug/guardduty_findings_cloudwatch.html with a finding's
# fields as guardduty/latest/APIReference/API_Finding.html lists them, for an IAM finding of severity 8.
GUARDDUTY_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "c8c4daa7-a20c-2f03-0070-b7393dd542ad",
    "detail-type": "GuardDuty Finding",
    "source": "aws.guardduty",
    "account": ACCOUNT,
    "time": "2026-11-27T10:00:00Z",
    "region": "ap-northeast-1",
    "resources": [],
    "detail": {
        "schemaVersion": "2.0",
        "accountId": ACCOUNT,
        "region": "ap-northeast-1",
        "partition": "aws",
        "id": "16afba5c5c43e07c9e3e5e2e544e95df",
        "arn": f"arn:aws:guardduty:ap-northeast-1:{ACCOUNT}:detector/12abc34d567e8fa901bc2d34e56789f0/finding/"
        "16afba5c5c43e07c9e3e5e2e544e95df",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "resource": {
            "resourceType": "AccessKey",
            "accessKeyDetails": {
                "accessKeyId": "ASIAIOSFODNN7EXAMPLE",
                "principalId": "AROAEXAMPLEID:i-0abcdef1234567890",
                "userName": "mlbase-WorkerHostRole",
                "userType": "AssumedRole",
            },
        },
        "service": {
            "serviceName": "guardduty",
            "detectorId": "12abc34d567e8fa901bc2d34e56789f0",
            "action": {"actionType": "AWS_API_CALL"},
            "archived": False,
            "count": 3,
            "eventFirstSeen": "2026-11-27T09:40:00.000Z",
            "eventLastSeen": "2026-11-27T09:58:00.000Z",
        },
        "severity": 8,
        "createdAt": "2026-11-27T09:45:00.000Z",
        "updatedAt": "2026-11-27T09:59:00.000Z",
        "title": "Credentials for instance role mlbase-WorkerHostRole used from external IP address.",
        "description": "Credentials created exclusively for an EC2 instance using instance role mlbase-WorkerHostRole "
        "have been used from external IP address 198.51.100.7.",
    },
}

# Security Hub "Findings - Imported" event (securityhub/latest/userguide/securityhub-cwe-event-formats.html) with one
# consolidated control finding shaped like those of securityhub/latest/userguide/sample-control-findings.html.
SECURITY_HUB_FINDING: dict[str, Any] = {
    "SchemaVersion": "2018-10-08",
    "Id": f"arn:aws:securityhub:ap-northeast-1:{ACCOUNT}:security-control/EC2.19/finding/"
    "7d8f4c2e-1b2a-4c3d-9e8f-0a1b2c3d4e5f",
    "ProductArn": "arn:aws:securityhub:ap-northeast-1::product/aws/securityhub",
    "ProductName": "Security Hub",
    "CompanyName": "AWS",
    "Region": "ap-northeast-1",
    "GeneratorId": "security-control/EC2.19",
    "AwsAccountId": ACCOUNT,
    "Types": ["Software and Configuration Checks/Industry and Regulatory Standards"],
    "Title": "Security groups should not allow unrestricted access to ports with high risk",
    "Description": "This control checks whether unrestricted incoming traffic for the security groups is accessible"
    " to the specified ports that have the highest risk.",
    "Severity": {"Label": "CRITICAL", "Normalized": 90, "Original": "CRITICAL"},
    "Remediation": {
        "Recommendation": {
            "Text": "For information on how to correct this issue, consult the AWS Security Hub controls"
            " documentation.",
            "Url": "https://docs.aws.amazon.com/console/securityhub/EC2.19/remediation",
        }
    },
    "Resources": [
        {
            "Type": "AwsEc2SecurityGroup",
            "Id": f"arn:aws:ec2:ap-northeast-1:{ACCOUNT}:security-group/sg-0123456789abcdef0",
            "Partition": "aws",
            "Region": "ap-northeast-1",
        }
    ],
    "Compliance": {"Status": "FAILED", "SecurityControlId": "EC2.19"},
    "WorkflowState": "NEW",
    "Workflow": {"Status": "NEW"},
    "RecordState": "ACTIVE",
}
SECURITY_HUB_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "8e5622f9-d81c-4d81-612a-9319e7ee2506",
    "detail-type": "Security Hub Findings - Imported",
    "source": "aws.securityhub",
    "account": ACCOUNT,
    "time": "2026-11-27T10:00:00Z",
    "region": "ap-northeast-1",
    "resources": [SECURITY_HUB_FINDING["Id"]],
    "detail": {"findings": [SECURITY_HUB_FINDING]},
}

# Access Analyzer finding event (IAM/latest/UserGuide/access-analyzer-eventbridge.html).
ACCESS_ANALYZER_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "22222222-dcba-4444-dcba-333333333333",
    "detail-type": "Access Analyzer Finding",
    "source": "aws.access-analyzer",
    "account": ACCOUNT,
    "time": "2026-11-27T10:00:00Z",
    "region": "ap-northeast-1",
    "resources": [f"arn:aws:access-analyzer:ap-northeast-1:{ACCOUNT}:analyzer/SecurityBaselineAccessAnalyzer"],
    "detail": {
        "version": "1.0",
        "id": "ab123456-7890-1234-5678-abcdef012345",
        "status": "ACTIVE",
        "resourceType": "AWS::S3::Bucket",
        "resource": "arn:aws:s3:::mlbase-shared-datasets",
        "createdAt": "2026-11-27T09:59:00Z",
        "analyzedAt": "2026-11-27T09:59:00Z",
        "updatedAt": "2026-11-27T09:59:00Z",
        "accountId": ACCOUNT,
        "region": "ap-northeast-1",
        "principal": {"AWS": "444455556666"},
        "action": ["s3:GetObject", "s3:ListBucket"],
        "condition": {},
        "isDeleted": False,
        "isPublic": False,
    },
}

CIS_ALARM: dict[str, Any] = {
    **ALARM,
    "AlarmName": "mlbase-cis-RootUsage",
    "AlarmDescription": "CloudWatch.1: the root user was used. See the trail's events in CloudTrail event history or"
    " its log group.",
    "AlarmArn": f"arn:aws:cloudwatch:ap-northeast-1:{ACCOUNT}:alarm:mlbase-cis-RootUsage",
    "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (27/11/26 09:55:00)] was greater than or"
    " equal to the threshold (1.0) (minimum 1 datapoint for OK -> ALARM transition).",
    "Trigger": {
        "MetricName": "RootUsage",
        "Namespace": "LogMetrics",
        "StatisticType": "Statistic",
        "Statistic": "SUM",
        "Unit": None,
        "Dimensions": [],
        "Period": 300,
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Threshold": 1.0,
    },
}


def test_guardduty_finding() -> None:
    message = format_record(sns_record(json.dumps(GUARDDUTY_EVENT)))
    assert message.source == "guardduty"
    assert message.text == "\n".join(
        [
            ":large_orange_circle: GuardDuty HIGH (8): Credentials for instance role mlbase-WorkerHostRole used from"
            " external IP address.",
            f"Account {ACCOUNT} ap-northeast-1",
            "Type: UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "Resource: access key ASIAIOSFODNN7EXAMPLE of AssumedRole mlbase-WorkerHostRole",
            GUARDDUTY_EVENT["detail"]["description"],
            "Seen 3 time(s), last at 2026-11-27T09:58:00.000Z",
            "https://ap-northeast-1.console.aws.amazon.com/guardduty/home?region=ap-northeast-1"
            "#/findings?search=id=16afba5c5c43e07c9e3e5e2e544e95df",
        ]
    )


@pytest.mark.parametrize(
    ("severity", "label"),
    [(10, "CRITICAL"), (9.0, "CRITICAL"), (8.9, "HIGH"), (7, "HIGH"), (5.5, "MEDIUM"), (2, "LOW")],
)
def test_guardduty_severity_bands(severity: float, label: str) -> None:
    from lambdas.slack_notify.logic import guardduty_severity

    assert guardduty_severity(severity) == label


def test_guardduty_instance_finding_names_the_instance() -> None:
    event = json.loads(json.dumps(GUARDDUTY_EVENT))
    event["detail"]["severity"] = 9.5
    event["detail"]["resource"] = {"resourceType": "Instance", "instanceDetails": {"instanceId": "i-0abcdef1234567890"}}
    lines = format_record(sns_record(json.dumps(event))).text.splitlines()
    assert lines[0].startswith(":red_circle: GuardDuty CRITICAL (9.5): ")
    assert "Resource: Instance i-0abcdef1234567890" in lines


def test_security_hub_finding() -> None:
    message = format_record(sns_record(json.dumps(SECURITY_HUB_EVENT)))
    assert message.source == "security_hub"
    assert message.text == "\n".join(
        [
            ":red_circle: Security Hub CRITICAL: Security groups should not allow unrestricted access to ports with"
            " high risk",
            f"Account {ACCOUNT} ap-northeast-1",
            f"Resource: AwsEc2SecurityGroup arn:aws:ec2:ap-northeast-1:{ACCOUNT}:security-group/sg-0123456789abcdef0",
            "From: Security Hub, control EC2.19",
            SECURITY_HUB_FINDING["Description"],
            "Fix: For information on how to correct this issue, consult the AWS Security Hub controls documentation.",
            "https://docs.aws.amazon.com/console/securityhub/EC2.19/remediation",
            "https://ap-northeast-1.console.aws.amazon.com/securityhub/home?region=ap-northeast-1#/findings",
        ]
    )


def test_security_hub_event_with_several_findings_lists_each() -> None:
    second = {**SECURITY_HUB_FINDING, "Title": "S3 general purpose buckets should block public access",
              "Severity": {"Label": "HIGH"}, "Compliance": {"SecurityControlId": "S3.8"}}  # fmt: skip
    event = {**SECURITY_HUB_EVENT, "detail": {"findings": [SECURITY_HUB_FINDING, second]}}
    lines = format_record(sns_record(json.dumps(event))).text.splitlines()
    assert lines[0].endswith("with high risk (+1 more)")
    assert "[HIGH] S3 general purpose buckets should block public access" in lines
    assert "From: Security Hub, control S3.8" in lines


def test_access_analyzer_finding() -> None:
    message = format_record(sns_record(json.dumps(ACCESS_ANALYZER_EVENT)))
    assert message.source == "access_analyzer"
    assert message.text == "\n".join(
        [
            ":unlock: Access Analyzer: AWS::S3::Bucket arn:aws:s3:::mlbase-shared-datasets is shared with"
            " AWS 444455556666",
            f"Account {ACCOUNT} ap-northeast-1",
            "Status: ACTIVE",
            "Actions: s3:GetObject, s3:ListBucket",
            "https://ap-northeast-1.console.aws.amazon.com/access-analyzer/home?region=ap-northeast-1#/findings",
        ]
    )


def test_access_analyzer_public_finding_says_public() -> None:
    event = json.loads(json.dumps(ACCESS_ANALYZER_EVENT))
    event["detail"].update(isPublic=True, principal={"AWS": "*"}, condition={"StringEquals": {"aws:SourceVpc": "x"}})
    lines = format_record(sns_record(json.dumps(event))).text.splitlines()
    assert lines[0].endswith("is shared with the public")
    assert 'Condition: {"StringEquals": {"aws:SourceVpc": "x"}}' in lines


def test_cis_alarm() -> None:
    message = format_record(sns_record(json.dumps(CIS_ALARM), 'ALARM: "mlbase-cis-RootUsage" in Asia Pacific (Tokyo)'))
    assert message.source == "cis_alarm"
    assert message.text == "\n".join(
        [
            ":rotating_light: CIS CloudWatch.1: the root user was used (alarm mlbase-cis-RootUsage)",
            f"Account {ACCOUNT} Asia Pacific (Tokyo)",
            "Reason: " + CIS_ALARM["NewStateReason"],
            "Who did it and what: the trail's events of the last minutes (CloudTrail event history).",
            "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1"
            "#alarmsV2:alarm/mlbase-cis-RootUsage",
            "https://ap-northeast-1.console.aws.amazon.com/cloudtrail/home?region=ap-northeast-1#/events",
        ]
    )


def test_cis_alarm_back_to_ok() -> None:
    ok = {**CIS_ALARM, "NewStateValue": "OK", "OldStateValue": "ALARM", "NewStateReason": None}
    message = format_record(sns_record(json.dumps(ok)))
    assert message.text.splitlines()[:2] == [
        ":white_check_mark: CIS CloudWatch.1: alarm mlbase-cis-RootUsage is OK",
        f"Account {ACCOUNT} Asia Pacific (Tokyo)",
    ]


def test_cis_alarm_descriptions_of_the_construct_are_recognised() -> None:
    from cdk_constructs.cis_alarms import CIS_CHECKS, CIS_METRIC_NAMESPACE, alarm_description
    from lambdas.slack_notify.logic import CIS_NAMESPACE

    assert CIS_NAMESPACE == CIS_METRIC_NAMESPACE
    for check in CIS_CHECKS:
        alarm = {**CIS_ALARM, "AlarmDescription": alarm_description(check)}
        assert format_record(sns_record(json.dumps(alarm))).text.splitlines()[0] == (
            f":rotating_light: CIS {check.control}: {check.title} (alarm mlbase-cis-RootUsage)"
        )


def test_other_alarm_in_the_cis_namespace_stays_a_plain_alarm() -> None:
    alarm = {**CIS_ALARM, "AlarmDescription": "hand-made alarm"}
    assert format_record(sns_record(json.dumps(alarm))).source == "cloudwatch_alarm"


def test_unknown_finding_shape_is_plain_text() -> None:
    body = json.dumps({"detail-type": "GuardDuty Finding", "detail": "not an object"})
    assert format_record(sns_record(body)).source == "plain"


def test_finding_text_cannot_inject_mentions() -> None:
    event = json.loads(json.dumps(GUARDDUTY_EVENT))
    event["detail"]["description"] = "<!here> <https://evil.example|click>"
    section = format_record(sns_record(json.dumps(event))).blocks[0]["text"]["text"]
    assert "&lt;!here&gt; &lt;https://evil.example|click&gt;" in section
    assert "<!here>" not in section


@pytest.mark.parametrize(
    ("event", "source", "headline"),
    [
        (GUARDDUTY_EVENT, "guardduty", ":large_orange_circle: GuardDuty HIGH (8): Credentials for instance role"),
        (SECURITY_HUB_EVENT, "security_hub", ":red_circle: Security Hub CRITICAL: Security groups should not allow"),
        (ACCESS_ANALYZER_EVENT, "access_analyzer", ":unlock: Access Analyzer: AWS::S3::Bucket"),
        (CIS_ALARM, "cis_alarm", ":rotating_light: CIS CloudWatch.1: the root user was used"),
    ],
)
def test_security_notifications_reach_slack(
    configure: Any, slack_server: SlackServer, event: dict[str, Any], source: str, headline: str
) -> None:
    configure({"bot_token": "xoxb-123", "channel": "C0SECURITY"})
    result = notify.handler(sns_event(sns_record(json.dumps(event))), FakeContext())
    assert result == {"delivered": [source]}
    [request] = slack_server.requests
    payload = request.json()
    assert (request.path, payload["channel"]) == ("/chat.postMessage", "C0SECURITY")
    assert payload["text"].startswith(headline)
    assert payload["blocks"][0]["text"]["text"].startswith(f"*{headline}")
    assert payload["blocks"][1]["type"] == "context"
