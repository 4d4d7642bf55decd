"""The security baseline in both accounts' Guardrails stacks, its routes to the notifications topic, its switches."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk_constructs.account_audit import TRAIL_LOG_GROUP_NAME
from cdk_constructs.cis_alarms import CIS_CHECKS, CIS_METRIC_NAMESPACE
from cdk_constructs.security_baseline import PASSWORD_POLICY
from tests.infra.conftest import resources_of, synth_variant

STACKS = ("Production-Guardrails", "Research-Guardrails")
ACCOUNTS = {"Production-Guardrails": "111111111111", "Research-Guardrails": "222222222222"}
BASELINE_TYPES = (
    "AWS::GuardDuty::Detector",
    "AWS::SecurityHub::Hub",
    "AWS::SecurityHub::Standard",
    "AWS::AccessAnalyzer::Analyzer",
    "AWS::Logs::MetricFilter",
    "Custom::AWS",
)


def topic_ref(t: dict[str, Any]) -> dict[str, str]:
    (lid,) = resources_of(t, "AWS::SNS::Topic")
    return {"Ref": lid}


def sdk_calls(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Custom::AWS resources by SDK action: their create call, parsed."""
    calls = {}
    for resource in resources_of(t, "Custom::AWS").values():
        create = json.loads(resource["Properties"]["Create"])
        calls[create["action"]] = {**create, "properties": resource["Properties"]}
    return calls


def rule_for(t: dict[str, Any], source: str) -> dict[str, Any]:
    (found,) = [
        r["Properties"] for r in resources_of(t, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"].get("source") == [source]
    ]  # fmt: skip
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_guardduty_detector_with_s3_protection(template: Callable[[str], Template], stack: str) -> None:
    template(stack).has_resource_properties(
        "AWS::GuardDuty::Detector",
        {
            "Enable": True,
            "Features": [{"Name": "S3_DATA_EVENTS", "Status": "ENABLED"}],
            "DataSources": Match.absent(),
        },
    )


@pytest.mark.parametrize("stack", STACKS)
def test_security_hub_with_the_two_standards(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    (hub_id, hub), *_ = resources_of(t, "AWS::SecurityHub::Hub").items()
    assert hub["Properties"]["EnableDefaultStandards"] is False
    standards = resources_of(t, "AWS::SecurityHub::Standard").values()
    assert sorted(s["Properties"]["StandardsArn"] for s in standards) == [
        "arn:aws:securityhub:ap-northeast-1::standards/aws-foundational-security-best-practices/v/1.0.0",
        "arn:aws:securityhub:ap-northeast-1::standards/cis-aws-foundations-benchmark/v/3.0.0",
    ]
    # A standard can only be enabled once the hub exists.
    assert all(s["DependsOn"] == [hub_id] for s in standards)


@pytest.mark.parametrize("stack", STACKS)
def test_access_analyzer_for_the_account(template: Callable[[str], Template], stack: str) -> None:
    template(stack).resource_count_is("AWS::AccessAnalyzer::Analyzer", 1)
    template(stack).has_resource_properties("AWS::AccessAnalyzer::Analyzer", {"Type": "ACCOUNT"})


@pytest.mark.parametrize("stack", STACKS)
def test_account_settings_are_sdk_calls_with_one_action_each_and_no_delete(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    t = templates[stack]
    calls = sdk_calls(t)
    assert set(calls) == {"putPublicAccessBlock", "enableEbsEncryptionByDefault", "updateAccountPasswordPolicy"}
    assert calls["putPublicAccessBlock"]["parameters"] == {
        "AccountId": ACCOUNTS[stack],
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    }
    password = calls["updateAccountPasswordPolicy"]["parameters"]
    assert password["MinimumPasswordLength"] >= 14
    assert password["PasswordReusePrevention"] == 24
    assert password == PASSWORD_POLICY
    # Removing a setting must not weaken the account: no delete call anywhere.
    assert all("Delete" not in c["properties"] for c in calls.values())
    policies = {
        lid: r["Properties"]["PolicyDocument"]["Statement"]
        for lid, r in resources_of(t, "AWS::IAM::Policy").items()
        if "CustomResourcePolicy" in lid and lid.startswith("SecurityBaseline")
    }
    assert sorted(s["Action"] for statements in policies.values() for s in statements) == [
        "ec2:EnableEbsEncryptionByDefault",
        "iam:UpdateAccountPasswordPolicy",
        "s3:PutAccountPublicAccessBlock",
    ]
    assert all(len(statements) == 1 for statements in policies.values())


@pytest.mark.parametrize("stack", STACKS)
def test_cis_filters_use_the_exact_patterns_on_the_trail_log_group(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    filters = [r["Properties"] for r in resources_of(templates[stack], "AWS::Logs::MetricFilter").values()]
    assert sorted((f["MetricTransformations"][0]["MetricName"], f["FilterPattern"]) for f in filters) == sorted(
        (c.name, c.pattern) for c in CIS_CHECKS
    )
    assert {f["LogGroupName"] for f in filters} == {TRAIL_LOG_GROUP_NAME}
    assert {f["MetricTransformations"][0]["MetricNamespace"] for f in filters} == {CIS_METRIC_NAMESPACE}


def test_cis_rows_cover_the_controls_and_the_changes_asked_for() -> None:
    controls = [c.control for c in CIS_CHECKS]
    assert controls[:14] == [f"CloudWatch.{n}" for n in range(1, 15)]
    assert "organizations.amazonaws.com" in CIS_CHECKS[14].pattern
    assert len({c.name for c in CIS_CHECKS}) == len(CIS_CHECKS)


@pytest.mark.parametrize("stack", STACKS)
def test_every_cis_alarm_notifies_the_topic(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in resources_of(t, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("Namespace") == CIS_METRIC_NAMESPACE
    }
    assert set(alarms) == {c.name for c in CIS_CHECKS}
    for check in CIS_CHECKS:
        alarm = alarms[check.name]
        assert alarm["AlarmActions"] == [topic_ref(t)]
        assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 300, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmName"] == f"mlbase-cis-{check.name}"
        assert alarm["AlarmDescription"].startswith(f"{check.control}: ")


@pytest.mark.parametrize("stack", STACKS)
def test_high_findings_of_each_source_go_to_the_topic(templates: dict[str, dict[str, Any]], stack: str) -> None:
    t = templates[stack]
    guardduty = rule_for(t, "aws.guardduty")
    assert guardduty["EventPattern"]["detail-type"] == ["GuardDuty Finding"]
    assert guardduty["EventPattern"]["detail"] == {"severity": [{"numeric": [">=", 7]}]}
    hub = rule_for(t, "aws.securityhub")
    assert hub["EventPattern"]["detail-type"] == ["Security Hub Findings - Imported"]
    findings = hub["EventPattern"]["detail"]["findings"]
    assert findings["Severity"] == {"Label": ["HIGH", "CRITICAL"]}
    # GuardDuty and Access Analyzer findings also arrive through Security Hub; their own rules already send them.
    assert findings["ProductName"] == [{"anything-but": ["GuardDuty", "IAM Access Analyzer"]}]
    analyzer = rule_for(t, "aws.access-analyzer")
    assert analyzer["EventPattern"] == {
        "detail": {"status": ["ACTIVE"], "isDeleted": [False]},
        "detail-type": ["Access Analyzer Finding"],
        "source": ["aws.access-analyzer"],
    }
    for rule in (guardduty, hub, analyzer):
        assert [target["Arn"] for target in rule["Targets"]] == [topic_ref(t)]
        assert "InputTransformer" not in rule["Targets"][0]


@pytest.mark.parametrize("stack", ["Production-Audit", "Research-Audit"])
def test_the_trail_log_group_has_the_name_guardrails_uses(template: Callable[[str], Template], stack: str) -> None:
    template(stack).has_resource_properties("AWS::Logs::LogGroup", {"LogGroupName": TRAIL_LOG_GROUP_NAME})


@pytest.fixture(scope="module")
def switched_off(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """GuardDuty, the S3 account block and the CIS alarms switched off; the other pieces left on."""

    def edit(raw: dict[str, Any]) -> None:
        raw["security_baseline"] = {"guardduty": False, "s3_block_public_access": False, "cis_alarms": False}

    return synth_variant(tmp_path_factory.mktemp("baseline-off"), edit)


@pytest.mark.parametrize("stack", STACKS)
def test_switched_off_pieces_are_gone_and_the_rest_stay(switched_off: dict[str, dict[str, Any]], stack: str) -> None:
    t = switched_off[stack]
    assert resources_of(t, "AWS::GuardDuty::Detector") == {}
    assert resources_of(t, "AWS::Logs::MetricFilter") == {}
    assert not any(
        r["Properties"].get("Namespace") == CIS_METRIC_NAMESPACE
        for r in resources_of(t, "AWS::CloudWatch::Alarm").values()
    )
    sources = {
        str(r["Properties"]["EventPattern"].get("source")) for r in resources_of(t, "AWS::Events::Rule").values()
    }
    assert "['aws.guardduty']" not in sources
    assert set(sdk_calls(t)) == {"enableEbsEncryptionByDefault", "updateAccountPasswordPolicy"}
    assert len(resources_of(t, "AWS::SecurityHub::Standard")) == 2
    assert len(resources_of(t, "AWS::AccessAnalyzer::Analyzer")) == 1


def test_default_config_has_every_baseline_type(templates: dict[str, dict[str, Any]]) -> None:
    for stack in STACKS:
        assert all(resources_of(templates[stack], kind) for kind in BASELINE_TYPES), stack


def _bare_host(request: Any, endpoint: str) -> None:
    rest = request.url.partition("://")[2]
    host, _, path = rest.partition("/")
    if host != endpoint.partition("://")[2]:
        request.url = f"{endpoint}/{path}"


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action)


@pytest.mark.parametrize("stack", STACKS)
def test_account_setting_calls_succeed_against_moto(templates: dict[str, dict[str, Any]], aws: str, stack: str) -> None:
    """Replays each custom resource's create call, with the parameters the template holds, on the moto server."""
    import boto3

    from tests.conftest import REGION

    # Calls as the stack's account: moto keys its account-level settings by the caller's account, which credentials
    # from an assumed role in that account carry.
    role = f"arn:aws:iam::{ACCOUNTS[stack]}:role/cdk-hnb659fds-cfn-exec-role"
    credentials = boto3.client("sts", region_name=REGION, endpoint_url=aws).assume_role(
        RoleArn=role, RoleSessionName="deploy"
    )["Credentials"]
    session = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )

    def client(service: str, endpoint: str) -> Any:
        made = session.client(service, endpoint_url=endpoint)
        # S3 Control puts the account ID in front of the host name; moto answers on the bare loopback address.
        made.meta.events.register("before-sign", lambda request, **_: _bare_host(request, endpoint))
        return made

    calls = sdk_calls(templates[stack])
    for call in calls.values():
        # The template names the JavaScript SDK's service and action; boto3 spells them in lower and snake case.
        getattr(client(call["service"].lower(), aws), _snake(call["action"]))(**call["parameters"])

    account = ACCOUNTS[stack]
    block = client("s3control", aws).get_public_access_block(AccountId=account)["PublicAccessBlockConfiguration"]
    assert block == calls["putPublicAccessBlock"]["parameters"]["PublicAccessBlockConfiguration"]
    assert client("ec2", aws).get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is True
    policy = client("iam", aws).get_account_password_policy()["PasswordPolicy"]
    assert {k: policy[k] for k in PASSWORD_POLICY} == PASSWORD_POLICY
