"""Photo service: upload bucket, queue + DLQ, GPU ECS workers from YAML, SLA-driven scaling, results, API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Match, Template

from cdk_constructs.sla_scaling import derive_policy
from stacks.config import DEFAULT_CONFIG, load_platform
from tests.infra.conftest import resources_of, synth_templates

STACK = "Production-PhotoService"


@pytest.fixture(scope="module")
def t(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates[STACK]


def one(t: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = resources_of(t, kind).values()
    return resource["Properties"]


def test_task_requests_a_gpu_and_runs_unprivileged_as_non_root(t: dict[str, Any]) -> None:
    (container,) = one(t, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    assert container["Privileged"] is False
    assert container["User"] == "10001"
    assert container["ReadonlyRootFilesystem"] is True
    assert container["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}]
    assert container["StopTimeout"] == 120
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_worker_environment_comes_from_the_yaml(t: dict[str, Any]) -> None:
    (container,) = one(t, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["MLBASE_BATCH_SIZE"] == "64"
    assert env["MLBASE_MODEL_URI"] == "s3://mlbase-models-111111111111/food/v1/"
    assert env["MLBASE_VISIBILITY_TIMEOUT_S"] == "900"
    assert env["MLBASE_LOG_LEVEL"] == "INFO"
    assert set(env) >= {"MLBASE_QUEUE_URL", "MLBASE_UPLOAD_BUCKET", "MLBASE_RESULTS_TABLE", "MLBASE_RESULTS_TOPIC_ARN"}


def test_hosts_use_the_pinned_gpu_ami_imdsv2_and_encrypted_gp3(t: dict[str, Any]) -> None:
    data = one(t, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (device,) = data["BlockDeviceMappings"]
    assert device["Ebs"] == {"Encrypted": True, "VolumeSize": 100, "VolumeType": "gp3"}
    image_param = data["ImageId"]["Ref"]
    assert t["Parameters"][image_param]["Default"].startswith("/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/")


def test_instance_types_and_spot_mix_come_from_the_yaml(t: dict[str, Any]) -> None:
    policy = one(t, "AWS::AutoScaling::AutoScalingGroup")["MixedInstancesPolicy"]
    overrides = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    assert overrides == ["g5.xlarge", "g4dn.xlarge"]
    assert policy["InstancesDistribution"]["OnDemandBaseCapacity"] == 1
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 25


def test_capacity_provider_drains_hosts_the_groups_own_policies_scale_in(t: dict[str, Any]) -> None:
    # ECS managed scaling keeps an empty host 15 minutes; the group's step policies (tests/tools/test_sla_scaling.py)
    # size it instead, and managed draining lets a host's task stop before the host terminates.
    provider = one(t, "AWS::ECS::CapacityProvider")["AutoScalingGroupProvider"]
    assert "ManagedScaling" not in provider
    assert provider["ManagedTerminationProtection"] == "DISABLED"
    assert provider["ManagedDraining"] == "ENABLED"
    assert one(t, "AWS::AutoScaling::AutoScalingGroup").get("NewInstancesProtectedFromScaleIn", False) is False


def test_queue_redrives_to_a_longer_lived_dlq(t: dict[str, Any]) -> None:
    queues = resources_of(t, "AWS::SQS::Queue")
    work = next(q["Properties"] for q in queues.values() if "RedrivePolicy" in q["Properties"])
    dlq_id = work["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert work["RedrivePolicy"]["maxReceiveCount"] == 5
    assert work["VisibilityTimeout"] == 900
    assert queues[dlq_id]["Properties"]["MessageRetentionPeriod"] == 14 * 86400 > work["MessageRetentionPeriod"]
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())


def test_upload_bucket_notifies_the_queue_for_uploads_only(t: dict[str, Any]) -> None:
    (notif,) = resources_of(t, "Custom::S3BucketNotifications").values()
    (config,) = notif["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}


def test_upload_bucket_is_encrypted_private_and_expires_originals(t: dict[str, Any]) -> None:
    (bucket,) = [
        b["Properties"] for b in resources_of(t, "AWS::S3::Bucket").values() if "CorsConfiguration" in b["Properties"]
    ]
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireOriginals"]["ExpirationInDays"] == 30
    assert rules["ExpireOriginals"]["Prefix"] == "uploads/"
    assert bucket["CorsConfiguration"]["CorsRules"][0]["AllowedMethods"] == ["POST"]


def test_alarms_on_dlq_depth_and_age_at_75_percent_of_sla(template: Callable[[str], Template]) -> None:
    template(STACK).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "ApproximateAgeOfOldestMessage", "Threshold": 2700, "AlarmActions": Match.any_value()},
    )
    template(STACK).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "ApproximateNumberOfMessagesVisible", "Threshold": 1, "AlarmActions": Match.any_value()},
    )


def test_target_tracking_uses_backlog_per_task_from_the_deployed_policy(t: dict[str, Any]) -> None:
    worker = load_platform().workers[0]
    expected = derive_policy(worker).target_tracking[0]
    (tracking,) = [
        p["Properties"] for p in resources_of(t, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["PolicyType"] == "TargetTrackingScaling"
    ]  # fmt: skip
    config = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == expected.target_value
    assert config["DisableScaleIn"] is True
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["backlog"]["Expression"] == expected.metric.expression
    assert metrics["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert metrics["inflight"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesNotVisible"


def test_step_policies_match_the_deployed_policy(t: dict[str, Any]) -> None:
    policy = derive_policy(load_platform().workers[0])
    steps = {
        p["Properties"]["PolicyName"]: p["Properties"]["StepScalingPolicyConfiguration"]
        for p in resources_of(t, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["PolicyType"] == "StepScaling"
    }
    assert set(steps) == {f"food-photo-{p.name}" for p in policy.step_policies}
    guard = next(p for p in policy.step_policies if p.name == "age-guard")
    deployed = steps["food-photo-age-guard"]["StepAdjustments"]
    assert [a["ScalingAdjustment"] for a in deployed] == [s.adjustment for s in guard.steps]
    assert deployed[0]["MetricIntervalLowerBound"] == 0  # bounds are offsets from the alarm threshold
    alarms = [a["Properties"] for a in resources_of(t, "AWS::CloudWatch::Alarm").values()]
    guard_alarm = next(a for a in alarms if "age-guard" in a.get("AlarmDescription", ""))
    assert guard_alarm["Threshold"] == guard.threshold
    assert guard_alarm["DatapointsToAlarm"] == guard.datapoints_to_alarm


def test_task_role_is_scoped(t: dict[str, Any]) -> None:
    task_def = one(t, "AWS::ECS::TaskDefinition")
    role_id = task_def["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = [p["Properties"] for p in resources_of(t, "AWS::IAM::Policy").values()
                if {"Ref": role_id} in p["Properties"]["Roles"]]  # fmt: skip
    actions = {a for p in policies for s in p["PolicyDocument"]["Statement"] for a in _list(s["Action"])}
    assert "ecs:UpdateTaskProtection" in actions
    assert "sqs:DeleteMessage" in actions
    assert "sqs:ReceiveMessage" in actions
    assert "dynamodb:PutItem" in actions
    assert "sns:Publish" in actions
    assert not any(a.endswith(":*") for a in actions)
    assert "s3:PutObject" not in actions


def test_results_table_keyed_by_upload_key_with_ttl_and_pitr(t: dict[str, Any]) -> None:
    table = one(t, "AWS::DynamoDB::Table")
    assert table["KeySchema"] == [{"AttributeName": "upload_key", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_api_routes_are_authorized_with_iam(t: dict[str, Any]) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"] for r in resources_of(t, "AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"POST /uploads", "GET /results/{upload_id}"}
    assert all(r["AuthorizationType"] == "AWS_IAM" for r in routes.values())


def logs_key_of(t: dict[str, Any], group: dict[str, Any]) -> str:
    """The logical ID of the group's key, which must let CloudWatch Logs in this region use it."""
    key_id: str = group["KmsKeyId"]["Fn::GetAtt"][0]
    policy = resources_of(t, "AWS::KMS::Key")[key_id]["Properties"]["KeyPolicy"]
    assert "logs.ap-northeast-1.amazonaws.com" in json.dumps(policy)
    return key_id


def test_api_access_logs_holding_source_ips_use_the_stacks_logs_key(t: dict[str, Any]) -> None:
    stage = one(t, "AWS::ApiGatewayV2::Stage")
    assert json.loads(stage["AccessLogSettings"]["Format"])["ip"] == "$context.identity.sourceIp"
    group_id = stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert logs_key_of(t, resources_of(t, "AWS::Logs::LogGroup")[group_id]["Properties"]).startswith("LogsKey")


def test_log_groups_aws_cdk_lib_makes_for_its_functions_use_the_stacks_logs_key(t: dict[str, Any]) -> None:
    # The AwsCustomResource provider gets `/aws/lambda/<name>` by itself (useCdkManagedLogGroup).
    library = [
        r["Properties"]
        for r in resources_of(t, "AWS::Logs::LogGroup").values()
        if "/aws/lambda/" in json.dumps(r["Properties"].get("LogGroupName"))
    ]
    assert library
    assert all(logs_key_of(t, group).startswith("LogsKey") for group in library)


def test_stateful_logical_ids_are_pinned(t: dict[str, Any]) -> None:
    assert "UploadsBucketC4B27CC7" in resources_of(t, "AWS::S3::Bucket")
    assert list(resources_of(t, "AWS::DynamoDB::Table")) == ["ResultsTableF0B5BF22"]
    assert sorted(resources_of(t, "AWS::SQS::Queue")) == ["FoodPhotoDeadLetterQueueBF118C67", "FoodPhotoQueueD5A8EFEE"]


def _list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_a_second_yaml_file_is_a_second_complete_service(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG.parent, config_dir)
    second = yaml.safe_load((config_dir / "workers" / "food-photo.yaml").read_text())
    second.update(name="receipt-photo", input_prefix="uploads/receipts/")
    first = yaml.safe_load((config_dir / "workers" / "food-photo.yaml").read_text())
    first["input_prefix"] = "uploads/food/"
    (config_dir / "workers" / "food-photo.yaml").write_text(yaml.safe_dump(first))
    (config_dir / "workers" / "receipt-photo.yaml").write_text(yaml.safe_dump(second))
    templates = synth_templates(config_dir / "platform.yaml", tmp_path / "out")
    t = templates[STACK]
    for kind in ("AWS::ECS::Service", "AWS::ECS::TaskDefinition", "AWS::ECS::Cluster", "AWS::ECS::CapacityProvider",
                 "AWS::AutoScaling::AutoScalingGroup", "AWS::CloudWatch::Dashboard"):  # fmt: skip
        assert len(resources_of(t, kind)) == 2, kind
    assert len(resources_of(t, "AWS::SQS::Queue")) == 4
    (notif,) = resources_of(t, "Custom::S3BucketNotifications").values()
    prefixes = sorted(
        c["Filter"]["Key"]["FilterRules"][0]["Value"]
        for c in notif["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    )
    assert prefixes == ["uploads/food/", "uploads/receipts/"]


def test_stack_deletion_cannot_hang_on_protected_hosts(t: dict[str, Any]) -> None:
    """Deletion order: service -> capacity provider association -> capacity provider -> teardown -> host group.

    The teardown's delete force-deletes the group, so hosts that ECS protected from scale-in do not stall the stack.
    """
    (teardown_id, teardown) = next(iter(resources_of(t, "Custom::AWS").items()))
    (asg_id,) = resources_of(t, "AWS::AutoScaling::AutoScalingGroup")
    (provider,) = resources_of(t, "AWS::ECS::CapacityProvider").values()
    (association_id,) = resources_of(t, "AWS::ECS::ClusterCapacityProviderAssociations")
    (service,) = resources_of(t, "AWS::ECS::Service").values()
    delete = json.dumps(teardown["Properties"]["Delete"])
    assert "deleteAutoScalingGroup" in delete
    assert '\\"ForceDelete\\":true' in delete
    assert asg_id in teardown["DependsOn"]
    assert teardown_id in provider["DependsOn"]
    assert association_id in service["DependsOn"]


def test_gpu_hosts_publish_gpu_utilization_for_the_dashboard(t: dict[str, Any]) -> None:
    data = one(t, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    user_data = json.dumps(data["UserData"])
    assert "amazon-cloudwatch-agent" in user_data
    assert "utilization_gpu" in user_data
    assert "ECS_ENABLE_GPU_SUPPORT=true" in user_data
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in user_data
    dashboard = json.dumps(one(t, "AWS::CloudWatch::Dashboard")["DashboardBody"])
    for title in ("Age of oldest photo vs SLA", "Backlog and in flight", "Tasks: running and desired",
                  "Images per second", "Per-stage latency p90 (ms)", "Errors by kind", "Dead-letter queue depth",
                  "GPU utilization (%)"):  # fmt: skip
        assert title in dashboard
    assert "nvidia_smi_utilization_gpu" in dashboard


def test_tasks_cannot_reach_the_instance_metadata_service(t: dict[str, Any]) -> None:
    data = one(t, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    # One hop: a token answer never travels past the host into a container's network namespace.
    assert data["MetadataOptions"] == {"HttpPutResponseHopLimit": 1, "HttpTokens": "required"}
    # And the ECS agent drops awsvpc tasks' traffic to 169.254.169.254 outright (IMDSv2 or not).
    assert "echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config" in json.dumps(data["UserData"])
    assert one(t, "AWS::ECS::TaskDefinition")["NetworkMode"] == "awsvpc"  # the mode the agent setting covers


def test_only_the_app_backend_role_may_name_a_user(t: dict[str, Any]) -> None:
    (backend_id,) = (
        rid
        for rid, r in resources_of(t, "AWS::IAM::Role").items()
        if r["Properties"].get("Description", "").startswith("Assumed by the app backend")
    )
    functions = {
        r["Properties"]["Description"]: r["Properties"]["Environment"]["Variables"]
        for r in resources_of(t, "AWS::Lambda::Function").values()
        if r["Properties"].get("Description", "").startswith(("Issues pre-signed", "Returns a photo"))
    }
    assert len(functions) == 2
    for variables in functions.values():
        assert variables["MLBASE_AUTH_MODE"] == "iam"
        # The role's unique ID (AROA...), which the handlers compare with the signed caller's.
        assert variables["MLBASE_BACKEND_ROLE_ID"] == {"Fn::GetAtt": [backend_id, "RoleId"]}
