"""Audit chain: what AWS services need to deliver into the archive, and who may tamper with it (nobody).

Each delivery case sends the request, and the context keys, that the cited AWS page says the service sends. Each
tamper case is a production administrator (AdministratorAccess) or CloudFormation's execution role trying an
operation the archive reserves for break-glass, or a reviewed change that must still deploy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import synth_variant
from tests.policy.assembly import Assembly
from tests.policy.engine import Case, Verdict, at, check, judge, outside_role, role_session, service

PROD, RESEARCH, REGION = "111111111111", "222222222222", "ap-northeast-1"
ARCHIVE = "Production/Audit/LogArchive/Bucket"
CONFIG_BUCKET = "Production/Audit/LogArchive/ConfigBucket"
KEY = "Production/Audit/LogArchive/Key"
ARCHIVE_ARN = f"arn:aws:s3:::mlbase-log-archive-{PROD}-{REGION}"
CONFIG_ARN = f"arn:aws:s3:::mlbase-config-{PROD}-{REGION}"

CT_S3 = "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-s3-bucket-policy-for-cloudtrail.html"
CT_MULTI = (
    "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-set-bucket-policy-for-multiple-accounts.html"
)
CT_KMS = "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html"
CT_CONTEXT = "https://docs.aws.amazon.com/kms/latest/developerguide/services-cloudtrail.html"
CFG_S3 = "https://docs.aws.amazon.com/config/latest/developerguide/s3-bucket-policy.html"
CFG_KMS = "https://docs.aws.amazon.com/config/latest/developerguide/s3-kms-key-policy.html"
REPL = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html"
REPL_KMS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html"
REPL_LOCK = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html"
LOGS_KMS = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"
DC_REF = (
    "https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-config-deliverychannel.html"
)


def trail(account: str, region: str = REGION) -> str:
    return f"arn:aws:cloudtrail:{region}:{account}:trail/mlbase-trail"


def cloudtrail_cases(account: str, region: str) -> list[Case]:
    """What one account's trail (home region `region`) does against the archive, as CloudTrail documents it."""
    source = {"aws:SourceArn": trail(account, region), "aws:SourceAccount": account}
    log_key = f"/AWSLogs/{account}/CloudTrail/{region}/2026/12/01/{account}_CloudTrail_{region}_x.json.gz"
    ct = service("cloudtrail.amazonaws.com")
    return [
        Case(f"cloudtrail-{account}-acl-check", ct, "s3:GetBucketAcl", at(ARCHIVE), "allow",
             "the trail checks the bucket ACL before delivering", CT_MULTI, source),
        Case(f"cloudtrail-{account}-put-log", ct, "s3:PutObject", at(ARCHIVE, log_key), "allow",
             "the trail writes its log files under AWSLogs/<account>/", CT_MULTI,
             {**source, "s3:x-amz-acl": "bucket-owner-full-control"}),
        Case(f"cloudtrail-{account}-generate-data-key", ct, "kms:GenerateDataKey", at(KEY), "allow",
             "S3 asks KMS for a data key on the trail's behalf, context = trail ARN + object ARN", CT_CONTEXT,
             source, {"aws:cloudtrail:arn": trail(account, region), "aws:s3:arn": ARCHIVE_ARN + log_key}),
        Case(f"cloudtrail-{account}-describe-key", ct, "kms:DescribeKey", at(KEY), "allow",
             "CreateTrail describes the key; DescribeKey carries no encryption context", CT_KMS, source, {}),
        Case(f"cloudtrail-{account}-bucket-key-decrypt", ct, "kms:Decrypt", at(KEY), "allow",
             "with an S3 Bucket Key on the archive CloudTrail needs Decrypt to create or update the trail", CT_KMS,
             source, {"aws:cloudtrail:arn": trail(account, region), "aws:s3:arn": ARCHIVE_ARN}),
    ]  # fmt: skip


def cases() -> list[Case]:
    ct = service("cloudtrail.amazonaws.com")
    config = service("config.amazonaws.com")
    foreign = "333333333333"
    admin = outside_role("Production/Audit", "Admin")
    deploy = outside_role("Production/Audit", f"cdk-hnb659fds-cfn-exec-role-{PROD}-{REGION}")
    break_glass = role_session("Production/Audit/LogArchive/BreakGlassRole", "alice")
    recorder = role_session("Production/Audit/AccountAudit/RecorderRole", "AWSConfig-BucketConfigCheck")
    replication = role_session("Production/Audit/LogArchive/ReplicationRole", "s3-replication")
    research_config = {"aws:SourceAccount": RESEARCH, "aws:SourceArn": f"arn:aws:config:{REGION}:{RESEARCH}:*"}
    config_object = f"/config/AWSLogs/{RESEARCH}/Config/{REGION}/2026/12/1/ConfigHistory/x.json.gz"
    prod_object = f"/config/AWSLogs/{PROD}/Config/{REGION}/2026/12/1/ConfigSnapshot/x.json.gz"
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:CallerAccount": PROD}
    return [
        *cloudtrail_cases(PROD, REGION),
        *cloudtrail_cases(RESEARCH, REGION),
        Case("cloudtrail-foreign-trail-put", ct, "s3:PutObject", at(ARCHIVE, f"/AWSLogs/{RESEARCH}/x.json.gz"),
             "deny", "another account's trail cannot write into the archive, even under a known prefix", CT_S3,
             {"aws:SourceArn": trail(foreign), "aws:SourceAccount": foreign,
              "s3:x-amz-acl": "bucket-owner-full-control"}),
        Case("cloudtrail-foreign-trail-key", ct, "kms:GenerateDataKey", at(KEY), "deny",
             "another account's trail cannot encrypt with the archive key", CT_KMS,
             {"aws:SourceArn": trail(foreign), "aws:SourceAccount": foreign},
             {"aws:cloudtrail:arn": trail(foreign), "aws:s3:arn": ARCHIVE_ARN}),
        # AWS Config, cross-account: the service principal (the research recorder role has no grant here).
        Case("config-research-acl-check", config, "s3:GetBucketAcl", at(CONFIG_BUCKET), "allow",
             "Config checks the bucket ACL before delivering", CFG_S3, research_config),
        Case("config-research-existence-check", config, "s3:ListBucket", at(CONFIG_BUCKET), "allow",
             "Config calls HeadBucket (ListBucket) to find the bucket and its region", CFG_S3, research_config),
        Case("config-research-put", config, "s3:PutObject", at(CONFIG_BUCKET, config_object), "allow",
             "Config delivers history and snapshots under config/AWSLogs/<account>/Config/", CFG_S3,
             {**research_config, "s3:x-amz-acl": "bucket-owner-full-control"}),
        Case("config-research-key", config, "kms:GenerateDataKey", at(KEY), "allow",
             "S3 encrypts Config's objects with the archive key (Bucket Key: context = bucket ARN)", CFG_KMS,
             research_config, {"aws:s3:arn": CONFIG_ARN}),
        Case("config-foreign-put", config, "s3:PutObject", at(CONFIG_BUCKET, f"/config/AWSLogs/{foreign}/Config/x"),
             "deny", "another account's Config cannot deliver here", CFG_S3,
             {"aws:SourceAccount": foreign, "s3:x-amz-acl": "bucket-owner-full-control"}),
        Case("config-research-into-archive", config, "s3:PutObject", at(ARCHIVE, config_object), "deny",
             "Config never writes the Object Lock archive itself (replication does)", DC_REF,
             {**research_config, "s3:x-amz-acl": "bucket-owner-full-control"}),
        # AWS Config, same account: the recorder's role.
        Case("config-production-role-acl-check", recorder, "s3:GetBucketAcl", at(CONFIG_BUCKET), "allow",
             "same account: Config assumes the recorder role to deliver", CFG_S3),
        Case("config-production-role-put", recorder, "s3:PutObject", at(CONFIG_BUCKET, prod_object), "allow",
             "same account: the recorder role writes under its own account's prefix", CFG_S3),
        Case("config-production-role-other-prefix", recorder, "s3:PutObject", at(CONFIG_BUCKET, config_object),
             "deny", "the recorder role writes only its own account's prefix", CFG_S3),
        Case("config-production-role-key", recorder, "kms:GenerateDataKey", at(KEY), "allow",
             "the recorder role needs GenerateDataKey on the key (custom-role case)", CFG_KMS, via_s3,
             {"aws:s3:arn": CONFIG_ARN}),
        # S3 Replication from the Config bucket into the locked archive.
        Case("replication-read-config", replication, "s3:GetReplicationConfiguration", at(CONFIG_BUCKET), "allow",
             "replication reads its configuration on the source", REPL),
        Case("replication-read-version", replication, "s3:GetObjectVersionForReplication",
             at(CONFIG_BUCKET, config_object), "allow", "replication reads each source version", REPL),
        Case("replication-read-retention", replication, "s3:GetObjectRetention", at(CONFIG_BUCKET, config_object),
             "allow", "an Object Lock destination needs GetObjectRetention on the source", REPL_LOCK),
        Case("replication-read-legal-hold", replication, "s3:GetObjectLegalHold", at(CONFIG_BUCKET, config_object),
             "allow", "an Object Lock destination needs GetObjectLegalHold on the source", REPL_LOCK),
        Case("replication-write-replica", replication, "s3:ReplicateObject", at(ARCHIVE, config_object), "allow",
             "replication writes the replica into the archive", REPL),
        Case("replication-decrypt-source", replication, "kms:Decrypt", at(KEY), "allow",
             "replication decrypts the source object (Bucket Key: context = source bucket ARN)", REPL_KMS,
             via_s3, {"aws:s3:arn": CONFIG_ARN}),
        Case("replication-encrypt-replica", replication, "kms:Encrypt", at(KEY), "allow",
             "replication encrypts the replica (Bucket Key: context = destination bucket ARN)", REPL_KMS,
             via_s3, {"aws:s3:arn": ARCHIVE_ARN}),
        Case("replication-decrypt-destination-bucket-key", replication, "kms:Decrypt", at(KEY), "allow",
             "with a Bucket Key the destination key must allow Decrypt to verify it", REPL_KMS,
             via_s3, {"aws:s3:arn": ARCHIVE_ARN}),
        Case("replication-no-delete", replication, "s3:DeleteObjectVersion", at(ARCHIVE, config_object), "deny",
             "replication never deletes archived versions"),
        # Tampering: a production administrator.
        Case("admin-delete-archive-policy", admin, "s3:DeleteBucketPolicy", at(ARCHIVE), "deny",
             "removing the bucket policy would remove every deny with it"),
        Case("admin-put-archive-policy", admin, "s3:PutBucketPolicy", at(ARCHIVE), "deny",
             "rewriting the bucket policy is a reviewed deploy, not an admin's call"),
        Case("admin-delete-archived-version", admin, "s3:DeleteObjectVersion", at(ARCHIVE, "/AWSLogs/x"), "deny",
             "archived logs are deleted by break-glass only"),
        Case("admin-bypass-governance", admin, "s3:BypassGovernanceRetention", at(ARCHIVE, "/AWSLogs/x"), "deny",
             "GOVERNANCE retention can be bypassed by break-glass only"),
        Case("admin-change-object-lock", admin, "s3:PutBucketObjectLockConfiguration", at(ARCHIVE), "deny",
             "the lock is changed by break-glass or a reviewed deploy"),
        Case("admin-change-lifecycle", admin, "s3:PutLifecycleConfiguration", at(ARCHIVE), "deny",
             "lifecycle (expiry) is changed by a reviewed deploy"),
        Case("admin-suspend-versioning", admin, "s3:PutBucketVersioning", at(ARCHIVE), "deny",
             "versioning is changed by a reviewed deploy"),
        Case("admin-change-replication", admin, "s3:PutReplicationConfiguration", at(CONFIG_BUCKET), "deny",
             "turning replication off would keep Config history out of the archive"),
        Case("admin-delete-config-object", admin, "s3:DeleteObject", at(CONFIG_BUCKET, prod_object), "deny",
             "Config history is as protected as the archive before it is replicated"),
        Case("admin-delete-config-policy", admin, "s3:DeleteBucketPolicy", at(CONFIG_BUCKET), "deny",
             "the Config bucket's policy holds the same denies"),
        Case("admin-schedule-key-deletion", admin, "kms:ScheduleKeyDeletion", at(KEY), "deny",
             "deleting the key would make the whole archive unreadable"),
        Case("admin-disable-key", admin, "kms:DisableKey", at(KEY), "deny",
             "a disabled key stops delivery and reading alike"),
        Case("admin-put-key-policy", admin, "kms:PutKeyPolicy", at(KEY), "deny",
             "a new key policy could drop the denies"),
        Case("admin-disable-rotation", admin, "kms:DisableKeyRotation", at(KEY), "deny",
             "rotation is part of the archive's key hygiene"),
        # A reviewed deploy: CloudFormation's execution role applies settings changes, but destroys nothing.
        Case("deploy-change-lifecycle", deploy, "s3:PutLifecycleConfiguration", at(ARCHIVE), "allow",
             "a reviewed change of transition_days or expiration_days must deploy"),
        Case("deploy-change-versioning", deploy, "s3:PutBucketVersioning", at(ARCHIVE), "allow",
             "CloudFormation re-applies versioning on every bucket update"),
        Case("deploy-change-lock", deploy, "s3:PutBucketObjectLockConfiguration", at(ARCHIVE), "allow",
             "a reviewed change of object_lock_days must deploy"),
        Case("deploy-update-policy", deploy, "s3:PutBucketPolicy", at(ARCHIVE), "allow",
             "a new source account changes the bucket policy through a reviewed deploy"),
        Case("deploy-update-key-policy", deploy, "kms:PutKeyPolicy", at(KEY), "allow",
             "key policy updates go through the reviewed deploy"),
        Case("deploy-delete-policy", deploy, "s3:DeleteBucketPolicy", at(ARCHIVE), "deny",
             "not even a deploy removes the bucket policy"),
        Case("deploy-delete-version", deploy, "s3:DeleteObjectVersion", at(ARCHIVE, "/AWSLogs/x"), "deny",
             "not even a deploy deletes archived logs"),
        Case("deploy-schedule-key-deletion", deploy, "kms:ScheduleKeyDeletion", at(KEY), "deny",
             "not even a deploy deletes the key (it is retained with the stack)"),
        # Break-glass can do what it exists for.
        Case("break-glass-delete-version", break_glass, "s3:DeleteObjectVersion", at(ARCHIVE, "/AWSLogs/x"),
             "allow", "break-glass carries out a court-ordered deletion (Object Lock still applies)"),
        Case("break-glass-legal-hold", break_glass, "s3:PutObjectLegalHold", at(ARCHIVE, "/AWSLogs/x"), "allow",
             "break-glass places legal holds"),
        Case("break-glass-delete-policy", break_glass, "s3:DeleteBucketPolicy", at(ARCHIVE), "allow",
             "break-glass may replace a broken bucket policy"),
        # CloudWatch Logs on the trail's log group key.
        Case("logs-encrypt-trail-group", service(f"logs.{REGION}.amazonaws.com"), "kms:GenerateDataKey",
             at("Production/Audit/AccountAudit/LogsKey"), "allow",
             "CloudWatch Logs encrypts with the log group ARN as encryption context", LOGS_KMS, {},
             {"aws:logs:arn": f"arn:aws:logs:{REGION}:{PROD}:log-group:trail"}),
        Case("logs-encrypt-foreign-group", service(f"logs.{REGION}.amazonaws.com"), "kms:GenerateDataKey",
             at("Production/Audit/AccountAudit/LogsKey"), "deny",
             "the key serves this account's log groups only", LOGS_KMS, {},
             {"aws:logs:arn": f"arn:aws:logs:{REGION}:333333333333:log-group:x"}),
    ]  # fmt: skip


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_audit_contract(case: Case, verdicts: dict[str, Verdict]) -> None:
    check(case, verdicts[case.id])


def test_every_delivery_case_cites_its_aws_page() -> None:
    services = [c for c in CASES if c.expect == "allow" and not c.id.startswith(("deploy-", "break-glass-"))]
    assert services
    assert all(c.doc.startswith("https://docs.aws.amazon.com/") for c in services), [
        c.id for c in services if not c.doc
    ]


# ---- constraints that are not permissions ------------------------------------------------------------------------
def test_no_delivery_channel_points_at_an_object_lock_bucket(assembly: Assembly) -> None:
    """AWS::Config::DeliveryChannel (DC_REF): 'AWS Config does not support the delivery channel to an Amazon S3 bucket
    where object lock is enabled'."""
    locked = {
        assembly.physical_name(b) for b in assembly.of_type("AWS::S3::Bucket") if b.props.get("ObjectLockEnabled")
    }
    channels = assembly.of_type("AWS::Config::DeliveryChannel")
    assert len(channels) == 2
    for channel in channels:
        bucket = assembly.resolve(channel.stack, channel.props["S3BucketName"])
        assert bucket not in locked, f"{channel.stack.name}: delivery channel into Object Lock bucket {bucket}"


def test_delivery_channels_name_the_key_by_arn(assembly: Assembly) -> None:
    """The API's s3KmsKeyArn is a key ARN (API_DeliveryChannel); research reads it by alias at deploy time."""
    production = assembly.of_type("AWS::Config::DeliveryChannel", stack="Production-Audit")[0]
    key_arn = assembly.resolve(production.stack, production.props["S3KmsKeyArn"])
    assert key_arn.startswith(f"arn:aws:kms:{REGION}:{PROD}:key/")
    research = assembly.of_type("AWS::Config::DeliveryChannel", stack="Research-Audit")[0]
    kms_arn = research.props["S3KmsKeyArn"]
    assert kms_arn == {"Fn::GetAtt": [kms_arn["Fn::GetAtt"][0], "KeyMetadata.Arn"]}
    lookup = research.stack.template["Resources"][kms_arn["Fn::GetAtt"][0]]
    assert lookup["Type"] == "Custom::AWS"
    assert f":{PROD}:alias/mlbase-log-archive" in str(lookup["Properties"]["Update"])


def test_replication_into_the_archive_meets_s3_requirements(assembly: Assembly) -> None:
    """Versioning on both sides, Object Lock on the destination, SSE-KMS objects opted in (REPL, REPL_KMS)."""
    source = assembly.at(CONFIG_BUCKET)
    destination = assembly.at(ARCHIVE)
    props = assembly.resolve(source.stack, source.props)
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert destination.props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert destination.props["ObjectLockEnabled"] is True
    (rule,) = props["ReplicationConfiguration"]["Rules"]
    assert rule["Destination"]["Bucket"] == assembly.arn(destination)
    assert rule["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"] == assembly.arn(assembly.at(KEY))
    assert rule["SourceSelectionCriteria"]["SseKmsEncryptedObjects"] == {"Status": "Enabled"}
    assert props["ReplicationConfiguration"]["Role"] == assembly.arn(
        assembly.at("Production/Audit/LogArchive/ReplicationRole")
    )


# ---- a research account in another region -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_region(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    def edit(data: dict[str, Any]) -> None:
        data["accounts"]["research"]["region"] = "us-west-2"
        data["accounts"]["research"]["availability_zones"] = ["us-west-2a", "us-west-2b"]
        data["allowed_regions"] = [REGION, "us-west-2"]

    root = tmp_path_factory.mktemp("other-region")
    synth_variant(root, edit)
    return Assembly(root / "cdk.out")


def test_research_trail_in_another_region_delivers(other_region: Assembly) -> None:
    cases = cloudtrail_cases(RESEARCH, "us-west-2")
    verdicts = judge(other_region, cases)
    for case in cases:
        check(case, verdicts[case.id])
    # And the production-region ARN no longer names a research trail that does not exist.
    wrong = cloudtrail_cases(RESEARCH, REGION)[1]
    assert not judge(other_region, [wrong])[wrong.id].allowed


def test_research_recorder_in_another_region_delivers(other_region: Assembly) -> None:
    context = {"aws:SourceAccount": RESEARCH, "aws:SourceArn": f"arn:aws:config:us-west-2:{RESEARCH}:*"}
    case = Case(
        "config-research-other-region-put",
        service("config.amazonaws.com"),
        "s3:PutObject",
        at(CONFIG_BUCKET, f"/config/AWSLogs/{RESEARCH}/Config/us-west-2/x.json.gz"),
        "allow",
        "Config delivers across regions into the production-region bucket",
        CFG_S3,
        {**context, "s3:x-amz-acl": "bucket-owner-full-control"},
    )
    check(case, judge(other_region, [case])[case.id])


def test_config_recorder_can_be_adopted(tmp_path: Path) -> None:
    """`audit.config_recorder.<account>: existing` keeps the account's recorder and creates none."""

    def edit(data: dict[str, Any]) -> None:
        data["audit"]["config_recorder"] = {"production": "create", "research": "existing"}

    templates = synth_variant(tmp_path, edit)
    kinds = [r["Type"] for r in templates["Research-Audit"]["Resources"].values()]
    assert "AWS::Config::ConfigurationRecorder" not in kinds
    assert "AWS::Config::DeliveryChannel" not in kinds
    assert "AWS::CloudTrail::Trail" in kinds
    prod_kinds = [r["Type"] for r in templates["Production-Audit"]["Resources"].values()]
    assert "AWS::Config::ConfigurationRecorder" in prod_kinds
