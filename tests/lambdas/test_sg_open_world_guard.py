"""sg-open-world's real-time path and remediation against moto server: EC2 groups, prefix lists, SNS to SQS.

Each test builds groups in moto's EC2, sends the handler the EventBridge event AWS would send, then reads back what
EC2 still holds and what the notifications topic delivered (an SQS queue subscribed to it in moto).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lambdas.sg_open_world import handler as rule
from lambdas.sg_open_world.logic import JUSTIFICATION_TAG_KEY
from lambdas.slack_notify.logic import format_record
from tests.conftest import client
from tests.lambdas.conftest import FakeContext

REASON = "public web frontend, ticket OPS-123"
OFFICE = "100.24.0.0/24"
ADMIN = "arn:aws:sts::123456789012:assumed-role/mlbase-ResearchDeveloper/taro"


@dataclass
class Account:
    endpoint: str
    ec2: Any
    vpc: str
    queue_url: str
    context: FakeContext

    def group(self, name: str, permissions: list[dict[str, Any]], tags: dict[str, str] | None = None) -> str:
        spec = [{"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}]
        group_id: str = self.ec2.create_security_group(
            GroupName=name, Description=name, VpcId=self.vpc, TagSpecifications=spec if tags else []
        )["GroupId"]
        if permissions:
            self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions)
        return group_id

    def ingress(self, group_id: str) -> set[tuple[str, int, str]]:
        """What the group still admits: (protocol, from port, source)."""
        rules = self.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
        return {
            (r["IpProtocol"], r["FromPort"], r.get("CidrIpv4") or r.get("CidrIpv6") or r.get("PrefixListId"))
            for r in rules["SecurityGroupRules"]
            if not r["IsEgress"]
        }

    def rule_ids(self, group_id: str) -> dict[tuple[str, int, str], str]:
        rules = self.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
        return {
            (r["IpProtocol"], r["FromPort"], r.get("CidrIpv4") or r.get("CidrIpv6") or r.get("PrefixListId")): r[
                "SecurityGroupRuleId"
            ]
            for r in rules["SecurityGroupRules"]
            if not r["IsEgress"]
        }

    def notifications(self) -> list[dict[str, Any]]:
        """Messages the topic delivered, as SNS envelopes (Subject, Message)."""
        sqs = client("sqs", self.endpoint)
        answer = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = rule.handler(event, self.context)
        return result


@pytest.fixture
def account(aws: str, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    sns = client("sns", aws)
    sqs = client("sqs", aws)
    topic = sns.create_topic(Name="notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("MLBASE_TOPIC_ARN", topic)
    monkeypatch.setenv("MLBASE_AUTO_REMEDIATE", "true")
    monkeypatch.setenv("MLBASE_RULE_PARAMETERS", json.dumps({"allowedPorts": "80,443"}))
    monkeypatch.delenv("MLBASE_WORLD_EXCEPTIONS", raising=False)
    rule.guard_settings.cache_clear()
    ec2 = client("ec2", aws)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    yield Account(aws, ec2, vpc, queue_url, lambda_context)
    rule.guard_settings.cache_clear()


def tcp(port: int, *cidrs: str, prefix_lists: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": c} for c in cidrs if ":" not in c],
        "Ipv6Ranges": [{"CidrIpv6": c} for c in cidrs if ":" in c],
        "PrefixListIds": [{"PrefixListId": p} for p in prefix_lists],
    }


def cloudtrail(event_name: str, request: dict[str, Any], response: dict[str, Any] | None = None) -> dict[str, Any]:
    """The EventBridge event of a CloudTrail management event, as EventBridge delivers it."""
    return {
        "version": "0",
        "id": "6f2e7a1c-0000-4000-8000-000000000001",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-12-01T09:00:00Z",
        "region": "ap-northeast-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {"type": "AssumedRole", "arn": ADMIN},
            "eventTime": "2026-12-01T09:00:00Z",
            "eventSource": "ec2.amazonaws.com",
            "eventName": event_name,
            "awsRegion": "ap-northeast-1",
            "requestParameters": request,
            "responseElements": response,
        },
    }


def test_remediation_revokes_exactly_the_offending_rules(account: Account) -> None:
    group = account.group(
        "split-world",
        [tcp(8888, "0.0.0.0/1", "128.0.0.0/1", OFFICE), tcp(443, "0.0.0.0/0"), tcp(22, "10.0.0.0/8")],
        tags={JUSTIFICATION_TAG_KEY: REASON},
    )
    ids = account.rule_ids(group)

    result = account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))

    # The two halves go; the justified 443, the private 22 and the small office range stay.
    assert account.ingress(group) == {("tcp", 443, "0.0.0.0/0"), ("tcp", 22, "10.0.0.0/8"), ("tcp", 8888, OFFICE)}
    halves = sorted([ids[("tcp", 8888, "0.0.0.0/1")], ids[("tcp", 8888, "128.0.0.0/1")]])
    # Revoked widest first (ties by source): compare as a set, rule IDs are random.
    [outcome] = result["groups"]
    assert {**outcome, "revoked": sorted(outcome["revoked"])} == {
        "group_id": group,
        "compliance": "NON_COMPLIANT",
        "revoked": halves,
    }
    [note] = account.notifications()
    assert note["Subject"] == f"mlbase: revoked world ingress on {group}"
    lines = note["Message"].split("\n")
    assert lines[0] == (
        f"Security group {group} (split-world) in VPC {account.vpc} is open to the world: [S6] tcp 8888 from "
        f"0.0.0.0/1, 128.0.0.0/1, {OFFICE} includes ports not in allowedPorts"
    )
    assert lines[1] == f"Cause: AuthorizeSecurityGroupIngress by {ADMIN} at 2026-12-01T09:00:00Z"
    assert lines[2] == "Revoked 2 ingress rules; every other rule is untouched:"
    assert sorted(lines[3:]) == sorted(
        [
            f"• {ids[('tcp', 8888, '0.0.0.0/1')]}: tcp 8888 from 0.0.0.0/1",
            f"• {ids[('tcp', 8888, '128.0.0.0/1')]}: tcp 8888 from 128.0.0.0/1",
        ]
    )


def test_the_slack_notifier_posts_the_revocation_as_written(account: Account) -> None:
    group = account.group("ssh", [tcp(22, "0.0.0.0/0")])
    account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    [note] = account.notifications()
    record = {
        "EventSource": "aws:sns",
        "Sns": {"Subject": note["Subject"], "Message": note["Message"], "TopicArn": note["TopicArn"]},
    }
    text = format_record(record).text
    assert note["Subject"] in text
    assert ": tcp 22 from 0.0.0.0/0" in text


def test_a_researcher_written_tag_does_not_save_the_rule(account: Account) -> None:
    group = account.group("demo", [tcp(443, "0.0.0.0/0")], tags={"mlbase:allow-world-ingress": "need it for demo"})
    account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    assert account.ingress(group) == set()
    [note] = account.notifications()
    assert "[S8]" in note["Message"]


def test_a_config_exception_keeps_its_port_open(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    group = account.group("partner", [tcp(8443, "0.0.0.0/0"), tcp(8080, "0.0.0.0/0")])
    monkeypatch.setenv(
        "MLBASE_WORLD_EXCEPTIONS",
        json.dumps([{"group_id": group, "ports": [8443], "reason": "partner webhook, PLAT-42"}]),
    )
    rule.guard_settings.cache_clear()
    account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    assert account.ingress(group) == {("tcp", 8443, "0.0.0.0/0")}


def test_a_prefix_list_holding_the_world_is_revoked_when_the_list_changes(account: Account) -> None:
    listed = account.ec2.create_managed_prefix_list(
        PrefixListName="partners", MaxEntries=5, AddressFamily="IPv4", Entries=[{"Cidr": OFFICE}]
    )["PrefixList"]["PrefixListId"]
    group = account.group("partners", [tcp(22, prefix_lists=(listed,)), tcp(22, "10.0.0.0/8")])
    account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    assert account.notifications() == []  # one office range: not the world

    account.ec2.modify_managed_prefix_list(PrefixListId=listed, CurrentVersion=1, AddEntries=[{"Cidr": "0.0.0.0/0"}])
    result = account.send(
        cloudtrail("ModifyManagedPrefixList", {"ModifyManagedPrefixListRequest": {"PrefixListId": listed}})
    )

    assert [g["group_id"] for g in result["groups"]] == [group]
    assert account.ingress(group) == {("tcp", 22, "10.0.0.0/8")}
    [note] = account.notifications()
    assert f"tcp 22 from {listed}" in note["Message"]


def test_an_allow_listed_aws_managed_list_is_left_alone(account: Account) -> None:
    lists = account.ec2.describe_managed_prefix_lists()["PrefixLists"]
    cloudfront = next(p["PrefixListId"] for p in lists if p["PrefixListName"].endswith("cloudfront.origin-facing"))
    s3 = next(p["PrefixListId"] for p in lists if p["PrefixListName"].endswith(".s3"))
    group = account.group("origin", [tcp(443, prefix_lists=(cloudfront,)), tcp(8080, prefix_lists=(s3,))])
    account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    # The S3 list is AWS-managed but not allow-listed: it counts as the whole address space.
    assert account.ingress(group) == {("tcp", 443, cloudfront)}


def test_with_remediation_off_it_reports_and_revokes_nothing(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLBASE_AUTO_REMEDIATE", "false")
    rule.guard_settings.cache_clear()
    group = account.group("v6", [{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/1"}, {"CidrIpv6": "8000::/1"}]}])
    before = account.ingress(group)
    result = account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    assert account.ingress(group) == before
    assert result["groups"][0]["revoked"] == []
    [note] = account.notifications()
    assert note["Subject"] == f"mlbase: world-open security group {group}"
    assert "Auto-remediation is off, nothing was revoked. Rules to revoke or justify:" in note["Message"]
    assert "[S4] all traffic from ::/1, 8000::/1 (all protocols)" in note["Message"]


def test_a_compliant_change_sends_nothing(account: Account) -> None:
    group = account.group("web", [tcp(443, "0.0.0.0/0", "::/0")], tags={JUSTIFICATION_TAG_KEY: REASON})
    result = account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": group}))
    assert result == {"groups": [{"group_id": group, "compliance": "COMPLIANT", "revoked": []}]}
    assert account.notifications() == []


def test_group_ids_are_found_in_modify_security_group_rules(account: Account) -> None:
    group = account.group("modified", [tcp(3389, "0.0.0.0/0")])
    request = {
        "ModifySecurityGroupRulesRequest": {"GroupId": group, "SecurityGroupRule": {"SecurityGroupRuleId": "sgr-1"}}
    }
    account.send(cloudtrail("ModifySecurityGroupRules", request))
    assert account.ingress(group) == set()


def test_config_non_compliance_is_remediated_as_the_group_is_now(account: Account) -> None:
    group = account.group("drifted", [tcp(443, "0.0.0.0/0"), tcp(22, "10.0.0.0/8")])
    event = {
        "version": "0",
        "detail-type": "Config Rules Compliance Change",
        "source": "aws.config",
        "time": "2026-12-01T09:05:00Z",
        "detail": {
            "resourceId": group,
            "resourceType": "AWS::EC2::SecurityGroup",
            "configRuleName": "mlbase-sg-open-world",
            "messageType": "ComplianceChangeNotification",
            "newEvaluationResult": {"complianceType": "NON_COMPLIANT"},
        },
    }
    account.send(event)
    assert account.ingress(group) == {("tcp", 22, "10.0.0.0/8")}
    [note] = account.notifications()
    assert "Cause: Config rule mlbase-sg-open-world found it NON_COMPLIANT at 2026-12-01T09:05:00Z" in note["Message"]


def test_a_failed_call_and_a_deleted_group_are_skipped(account: Account) -> None:
    failed = cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": "sg-0aaaaaaaaaaaaaaaa"})
    failed["detail"]["errorCode"] = "Client.UnauthorizedOperation"
    assert account.send(failed) == {"groups": [], "skipped": "call failed: Client.UnauthorizedOperation"}
    gone = account.send(cloudtrail("AuthorizeSecurityGroupIngress", {"groupId": "sg-0bbbbbbbbbbbbbbbb"}))
    assert gone == {"groups": [{"group_id": "sg-0bbbbbbbbbbbbbbbb", "compliance": "NOT_APPLICABLE"}]}


def test_unknown_events_are_errors(account: Account) -> None:
    with pytest.raises(ValueError, match="unexpected CloudTrail event 'CreateTags'"):
        account.send(cloudtrail("CreateTags", {}))
    with pytest.raises(ValueError, match="neither an AWS Config invocation"):
        account.send({"hello": "world"})


def test_guard_needs_its_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLBASE_TOPIC_ARN", raising=False)
    rule.guard_settings.cache_clear()
    with pytest.raises(ValueError, match="MLBASE_TOPIC_ARN must be set"):
        rule.guard_settings()
