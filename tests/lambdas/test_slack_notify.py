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
def configure(aws: str, monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer) -> Iterator[Any]:
    """Returns a function that stores a Slack secret in moto and points the handler at it."""

    def make(secret: dict[str, str]) -> str:
        arn: str = client("secretsmanager", aws).create_secret(Name="mlbase/slack", SecretString=json.dumps(secret))[
            "ARN"
        ]
        monkeypatch.setenv("MLBASE_SLACK_SECRET_ARN", arn)
        monkeypatch.setenv("MLBASE_SLACK_API_BASE", slack_server.url)
        monkeypatch.setenv("MLBASE_SLACK_MAX_ATTEMPTS", "3")
        monkeypatch.setenv("MLBASE_SLACK_MAX_DELAY_SECONDS", "0.01")
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
