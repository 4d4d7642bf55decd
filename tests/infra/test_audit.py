"""The audit archive, trails and Config: the settings the foundation promises, asserted one behaviour per test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template

from tests.infra.conftest import resources_of

PROD, RESEARCH = "111111111111", "222222222222"
ARCHIVE = f"mlbase-log-archive-{PROD}-ap-northeast-1"


def archive_bucket(t: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = [r for r in resources_of(t, "AWS::S3::Bucket").values() if r["Properties"].get("BucketName") == ARCHIVE]
    return bucket["Properties"]


def archive_policy_statements(t: dict[str, Any], bucket: str = "Bucket") -> list[dict[str, Any]]:
    """The bucket policy statements of the archive (or of the LogArchive construct's other bucket `bucket`)."""
    name = ARCHIVE if bucket == "Bucket" else "mlbase-config-111111111111-ap-northeast-1"
    for policy in resources_of(t, "AWS::S3::BucketPolicy").values():
        bucket_ref = policy["Properties"]["Bucket"]
        logical = bucket_ref.get("Ref")
        if t["Resources"][logical]["Properties"].get("BucketName") == name:
            return list(policy["Properties"]["PolicyDocument"]["Statement"])
    raise AssertionError(f"bucket policy of {name} not found")


def test_archive_object_lock_defaults_to_compliance_365_days(templates: dict[str, dict[str, Any]]) -> None:
    props = archive_bucket(templates["Production-Audit"])
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}},
    }


def test_archive_is_versioned_kms_encrypted_and_private(templates: dict[str, dict[str, Any]]) -> None:
    props = archive_bucket(templates["Production-Audit"])
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "Fn::GetAtt" in rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_archive_key_rotates(template: Callable[[str], Template]) -> None:
    template("Production-Audit").has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True, "Description": Match.string_like_regexp("audit log archive")}
    )
    template("Production-Audit").has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/mlbase-log-archive"})


def test_archive_logs_access_to_a_separate_bucket(templates: dict[str, dict[str, Any]]) -> None:
    t = templates["Production-Audit"]
    props = archive_bucket(t)
    target = props["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    log_bucket = t["Resources"][target]["Properties"]
    assert "ObjectLockEnabled" not in log_bucket
    sse = log_bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "AES256"}


def test_archive_moves_to_cheaper_storage_and_expires_after_the_lock(templates: dict[str, dict[str, Any]]) -> None:
    (rule,) = archive_bucket(templates["Production-Audit"])["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]
    assert rule["ExpirationInDays"] == 2555 > 365


def test_archive_policy_enforces_tls(templates: dict[str, dict[str, Any]]) -> None:
    statements = archive_policy_statements(templates["Production-Audit"])
    tls = [s for s in statements if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert tls
    assert tls[0]["Effect"] == "Deny"
    assert tls[0]["Action"] == "s3:*"


def test_archive_denies_deletion_and_lock_changes_to_all_but_break_glass(templates: dict[str, dict[str, Any]]) -> None:
    t = templates["Production-Audit"]
    (deny,) = [s for s in archive_policy_statements(t) if s.get("Sid") == "DenyDeletionExceptBreakGlass"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == {"AWS": "*"}
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention",
                   "s3:DeleteBucketPolicy", "s3:PutObjectLegalHold"):  # fmt: skip
        assert action in deny["Action"]
    (exempt,) = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    role_logical = exempt["Fn::GetAtt"][0]
    role = t["Resources"][role_logical]
    assert role["Properties"]["RoleName"] == "MlbaseBreakGlass"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}


def test_archive_admits_both_accounts_trails_scoped_by_source_arn(templates: dict[str, dict[str, Any]]) -> None:
    statements = {s.get("Sid"): s for s in archive_policy_statements(templates["Production-Audit"])}
    write = statements["CloudTrailWrite"]
    assert write["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == [
        f"arn:aws:cloudtrail:ap-northeast-1:{PROD}:trail/mlbase-trail",
        f"arn:aws:cloudtrail:ap-northeast-1:{RESEARCH}:trail/mlbase-trail",
    ]
    resources = write["Resource"]
    assert any(f"/AWSLogs/{RESEARCH}/*" in str(r) for r in resources)
    assert any(f"/AWSLogs/{PROD}/*" in str(r) for r in resources)


def test_config_bucket_admits_both_accounts_config_scoped_by_source_account(
    templates: dict[str, dict[str, Any]],
) -> None:
    statements = {s.get("Sid"): s for s in archive_policy_statements(templates["Production-Audit"], "ConfigBucket")}
    for sid in ("ConfigAclCheck", "ConfigWrite"):
        assert statements[sid]["Principal"] == {"Service": "config.amazonaws.com"}
        assert statements[sid]["Condition"]["StringEquals"]["aws:SourceAccount"] == [PROD, RESEARCH]


def test_archive_key_lets_both_trails_encrypt(templates: dict[str, dict[str, Any]]) -> None:
    (key,) = [
        k for k in resources_of(templates["Production-Audit"], "AWS::KMS::Key").values()
        if "archive" in k["Properties"]["Description"]
    ]  # fmt: skip
    statements = {s.get("Sid"): s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert "kms:GenerateDataKey*" in statements["CloudTrailEncrypt"]["Action"]
    assert len(statements["CloudTrailEncrypt"]["Condition"]["StringEquals"]["aws:SourceArn"]) == 2
    assert statements["ConfigEncrypt"]["Condition"]["StringEquals"]["aws:SourceAccount"] == [PROD, RESEARCH]


def test_each_account_has_a_multi_region_validated_encrypted_trail(template: Callable[[str], Template]) -> None:
    for stack in ("Production-Audit", "Research-Audit"):
        template(stack).has_resource_properties(
            "AWS::CloudTrail::Trail",
            {
                "TrailName": "mlbase-trail",
                "IsMultiRegionTrail": True,
                "IncludeGlobalServiceEvents": True,
                "EnableLogFileValidation": True,
                "S3BucketName": ARCHIVE,
                "KMSKeyId": "arn:aws:kms:ap-northeast-1:111111111111:alias/mlbase-log-archive",
                "CloudWatchLogsLogGroupArn": Match.any_value(),
            },
        )


def test_trail_log_groups_are_encrypted_with_retention(template: Callable[[str], Template]) -> None:
    for stack in ("Production-Audit", "Research-Audit"):
        template(stack).has_resource_properties(
            "AWS::Logs::LogGroup", {"RetentionInDays": 365, "KmsKeyId": Match.any_value()}
        )


def test_each_account_records_all_resources_with_global_types(template: Callable[[str], Template]) -> None:
    for stack in ("Production-Audit", "Research-Audit"):
        template(stack).has_resource_properties(
            "AWS::Config::ConfigurationRecorder",
            {"RecordingGroup": {"AllSupported": True, "IncludeGlobalResourceTypes": True}},
        )
        # Config cannot deliver into Object Lock: its own bucket, replicated into the archive.
        template(stack).has_resource_properties(
            "AWS::Config::DeliveryChannel",
            {"S3BucketName": "mlbase-config-111111111111-ap-northeast-1", "S3KeyPrefix": "config"},
        )


def test_production_aggregates_both_accounts(template: Callable[[str], Template]) -> None:
    template("Production-Audit").has_resource_properties(
        "AWS::Config::ConfigurationAggregator",
        {"AccountAggregationSources": [{"AccountIds": [PROD, RESEARCH], "AwsRegions": ["ap-northeast-1"]}]},
    )
    template("Research-Audit").has_resource_properties(
        "AWS::Config::AggregationAuthorization",
        {"AuthorizedAccountId": PROD, "AuthorizedAwsRegion": "ap-northeast-1"},
    )


def test_stateful_logical_ids_are_pinned(templates: dict[str, dict[str, Any]]) -> None:
    """Renaming these would replace the archive: the change must be deliberate, so this test must change too."""
    t = templates["Production-Audit"]
    buckets = sorted(resources_of(t, "AWS::S3::Bucket"))
    assert buckets == [
        "LogArchiveAccessLogBucketA7576278",
        "LogArchiveBucket6951A440",
        "LogArchiveConfigBucket06FC9A38",
    ]
    assert sorted(resources_of(t, "AWS::KMS::Key")) == ["AccountAuditLogsKey13DA9E1B", "LogArchiveKey11A44769"]


def test_archive_admits_flow_logs_only_when_asked(tmp_path: Path) -> None:
    from aws_cdk import App, Environment, Stack

    from cdk_constructs.log_archive import ArchiveLocation, AuditSource, LogArchive
    from stacks.stages import feature_flags

    stacks = {}
    for prefix in (None, "vpc-flow-logs/"):
        app = App(outdir=str(tmp_path / str(bool(prefix))), context=feature_flags())
        stack = Stack(app, f"Probe{bool(prefix)}", env=Environment(account=PROD, region="ap-northeast-1"))
        LogArchive(
            stack,
            "LogArchive",
            location=ArchiveLocation(account=PROD, region="ap-northeast-1", project="mlbase"),
            sources=[AuditSource(PROD, "ap-northeast-1"), AuditSource(RESEARCH, "ap-northeast-1")],
            lock_mode="COMPLIANCE",
            lock_days=365,
            transition_days=90,
            expiration_days=2555,
            break_glass_role_name="MlbaseBreakGlass",
            flow_log_prefix=prefix,
        )
        stacks[prefix] = Template.from_stack(stack).to_json()
    without, with_flow_logs = stacks[None], stacks["vpc-flow-logs/"]
    assert "delivery.logs.amazonaws.com" not in json.dumps(without)
    statements = {s.get("Sid"): s for s in archive_policy_statements(with_flow_logs)}
    write = statements["FlowLogsWrite"]
    assert write["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert write["Condition"]["StringEquals"] == {
        "aws:SourceAccount": PROD,
        "s3:x-amz-acl": "bucket-owner-full-control",
    }
    assert f"/vpc-flow-logs/AWSLogs/{PROD}/*" in json.dumps(write["Resource"])
    key = next(k for k in resources_of(with_flow_logs, "AWS::KMS::Key").values())
    sids = {s.get("Sid") for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert "FlowLogsEncrypt" in sids
