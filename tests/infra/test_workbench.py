"""Research workbench: one private GPU workstation per researcher, the idle monitor and the /gpu bot."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import resources_of

STACK = "Research-Workbench"


@pytest.fixture(scope="module")
def t(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates[STACK]


def instances(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in resources_of(t, "AWS::EC2::Instance").items()}


def tags(props: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in props.get("Tags", [])}


def test_one_workstation_per_researcher_with_owner_tags(t: dict[str, Any]) -> None:
    owners = {tags(p)["Owner"]: tags(p) for p in instances(t).values()}
    assert set(owners) == {"taro", "yuki"}
    assert owners["taro"]["SlackUserId"] == "U02RSRCHR1"
    assert all(o["mlbase:managed"] == "true" for o in owners.values())


def test_workstations_are_private_keyless_and_monitored(t: dict[str, Any]) -> None:
    for props in instances(t).values():
        assert "KeyName" not in props
        assert "NetworkInterfaces" not in props
        assert props["Monitoring"] is True
        # The subnet comes from the network stack's output for one of the R&D VPC's private subnets.
        assert "ResearchVpcPrivateSubnet" in json.dumps(props["SubnetId"])


def test_workstations_require_imdsv2_and_encrypted_gp3(t: dict[str, Any]) -> None:
    templates = [r["Properties"]["LaunchTemplateData"] for r in resources_of(t, "AWS::EC2::LaunchTemplate").values()]
    assert len(templates) == 2
    assert all(lt["MetadataOptions"]["HttpTokens"] == "required" for lt in templates)
    for props in instances(t).values():
        (root,) = props["BlockDeviceMappings"]
        assert root["Ebs"]["Encrypted"] is True
        assert root["Ebs"]["VolumeType"] == "gp3"


def test_instance_type_and_ami_version_come_from_the_roster(t: dict[str, Any]) -> None:
    by_owner = {tags(p)["Owner"]: p for p in instances(t).values()}
    assert by_owner["taro"]["InstanceType"] == "g5.xlarge"
    assert by_owner["yuki"]["InstanceType"] == "g4dn.xlarge"
    image_param = by_owner["taro"]["ImageId"]["Ref"]
    assert t["Parameters"][image_param]["Default"] == "/mlbase/ami/workstation/driver570-cuda12.8-v1"
    assert t["Parameters"][image_param]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"


def test_removing_a_person_snapshots_their_data_volume(t: dict[str, Any]) -> None:
    volumes = resources_of(t, "AWS::EC2::Volume")
    assert len(volumes) == 2
    for volume in volumes.values():
        assert volume["DeletionPolicy"] == "Snapshot"
        assert volume["Properties"]["Encrypted"] is True
    sizes = sorted(v["Properties"]["Size"] for v in volumes.values())
    assert sizes == [150, 200]


def test_workstations_admit_only_the_management_vpc(t: dict[str, Any]) -> None:
    (sg,) = resources_of(t, "AWS::EC2::SecurityGroup").values()
    rules = sg["Properties"]["SecurityGroupIngress"]
    assert {r["CidrIp"] for r in rules} == {"10.10.0.0/20"}
    assert sorted(r["FromPort"] for r in rules) == [22, 443, 8888]


def test_idle_monitor_runs_on_the_configured_schedule(t: dict[str, Any]) -> None:
    (rule,) = resources_of(t, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(3 hours)"
    (target,) = rule["Properties"]["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert "DeadLetterConfig" in target


def env_of(t: dict[str, Any], handler: str) -> dict[str, str]:
    (fn,) = [
        r["Properties"] for r in resources_of(t, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == handler
    ]  # fmt: skip
    env: dict[str, str] = fn["Environment"]["Variables"]
    return env


def function(t: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r["Properties"]) for lid, r in resources_of(t, "AWS::Lambda::Function").items()
        if r["Properties"].get("FunctionName") == name
    ]  # fmt: skip
    return found


def statements_of(t: dict[str, Any], name: str) -> list[dict[str, Any]]:
    role = function(t, name)[1]["Role"]["Fn::GetAtt"][0]
    return [
        s for p in resources_of(t, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role}]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]  # fmt: skip


def actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_idle_monitor_settings_come_from_config(t: dict[str, Any]) -> None:
    env = env_of(t, "lambdas.idle_monitor.handler.handler")
    assert json.loads(env["MLBASE_ROSTER"]) == [
        {"name": "taro", "slack_user_id": "U02RSRCHR1", "instance_type": "g5.xlarge"},
        {"name": "yuki", "slack_user_id": "U03RSRCHR2", "instance_type": "g4dn.xlarge"},
    ]
    assert json.loads(env["MLBASE_PRICES"])["g5.xlarge"] == 1.459
    assert env["MLBASE_AUTO_STOP_AFTER_CHECKS"] == "0"
    assert env["MLBASE_GPU_IDLE_PERCENT"] == "5"


def test_bot_and_jobs_get_admins_fallbacks_and_secrets_by_reference(t: dict[str, Any]) -> None:
    for name in ("mlbase-gpu-bot", "mlbase-gpu-jobs"):
        env = function(t, name)[1]["Environment"]["Variables"]
        assert env["MLBASE_ADMIN_SLACK_IDS"] == "U01PLATFRM"
        assert json.loads(env["MLBASE_FALLBACK_INSTANCE_TYPES"]) == {"g5.xlarge": ["g6.xlarge", "g4dn.xlarge"]}
        assert "mlbase/slack-signing" in json.dumps(env["MLBASE_SIGNING_SECRET_ARN"])
    assert "xox" not in json.dumps(t)


def test_only_the_jobs_function_may_touch_managed_instances(t: dict[str, Any]) -> None:
    jobs = statements_of(t, "mlbase-gpu-jobs")
    start = next(s for s in jobs if "ec2:StartInstances" in s["Action"])
    assert start["Condition"] == {"StringEquals": {"aws:ResourceTag/mlbase:managed": "true"}}
    statements = [
        s for p in resources_of(t, "AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert all("Condition" in s for s in statements if "ec2:StopInstances" in s["Action"])
    # The HTTP function answers Slack and hands on; it cannot act on EC2 or post to the channel.
    assert not any(a.startswith("ec2:") for a in actions(statements_of(t, "mlbase-gpu-bot")))


def test_bot_hands_jobs_to_the_jobs_function_only(t: dict[str, Any]) -> None:
    jobs_id, _ = function(t, "mlbase-gpu-jobs")
    env = function(t, "mlbase-gpu-bot")[1]["Environment"]["Variables"]
    assert env["MLBASE_JOBS_FUNCTION"] == {"Fn::GetAtt": [jobs_id, "Arn"]}
    invoke = [s for s in statements_of(t, "mlbase-gpu-bot") if "lambda:InvokeFunction" in s["Action"]]
    resources = [r for s in invoke for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    assert {"Fn::GetAtt": [jobs_id, "Arn"]} in resources
    assert all(jobs_id in json.dumps(r) for r in resources)  # no invoke of anything else, itself included


def test_seen_signatures_table(t: dict[str, Any]) -> None:
    ((table_id, table),) = resources_of(t, "AWS::DynamoDB::Table").items()
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    for name in ("mlbase-gpu-bot", "mlbase-gpu-jobs"):
        env = function(t, name)[1]["Environment"]["Variables"]
        assert env["MLBASE_SEEN_TABLE"] == {"Ref": table_id}
        put = [s for s in statements_of(t, name) if "dynamodb:PutItem" in s["Action"]]
        assert put
        assert all(
            json.dumps(s["Resource"]).count("Fn::GetAtt") == json.dumps(s["Resource"]).count(table_id) for s in put
        )


def test_failed_jobs_land_in_a_queue_with_an_alarm(t: dict[str, Any]) -> None:
    jobs_id, _ = function(t, "mlbase-gpu-jobs")
    (config,) = [
        r["Properties"] for r in resources_of(t, "AWS::Lambda::EventInvokeConfig").values()
        if r["Properties"]["FunctionName"] == {"Ref": jobs_id}
    ]  # fmt: skip
    assert config["MaximumRetryAttempts"] == 0
    queue = config["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert resources_of(t, "AWS::SQS::Queue")[queue]["Properties"]["SqsManagedSseEnabled"] is True
    (alarm,) = [
        r["Properties"] for r in resources_of(t, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("Dimensions") == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    ]  # fmt: skip
    assert alarm["MetricName"] == "NumberOfMessagesSent"
    assert "Ref" in json.dumps(alarm["AlarmActions"]) or "ImportValue" in json.dumps(alarm["AlarmActions"])


def test_bot_route_is_the_slash_command(t: dict[str, Any]) -> None:
    routes = [r["Properties"]["RouteKey"] for r in resources_of(t, "AWS::ApiGatewayV2::Route").values()]
    assert routes == ["POST /slack/commands"]


def test_bot_stage_is_throttled_and_logged_with_the_logs_key(t: dict[str, Any]) -> None:
    (stage,) = [r["Properties"] for r in resources_of(t, "AWS::ApiGatewayV2::Stage").values()]
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 20, "ThrottlingRateLimit": 10}
    group_id = stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    group = resources_of(t, "AWS::Logs::LogGroup")[group_id]["Properties"]
    key_id = group["KmsKeyId"]["Fn::GetAtt"][0]
    key = resources_of(t, "AWS::KMS::Key")[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert "logs.ap-northeast-1.amazonaws.com" in json.dumps(key["KeyPolicy"])
    log_format = json.loads(stage["AccessLogSettings"]["Format"])
    assert log_format["ip"] == "$context.identity.sourceIp"
    assert log_format["status"] == "$context.status"
