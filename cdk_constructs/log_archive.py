"""The central, tamper-proof audit log archive (production account), and what other accounts need to deliver to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.access_logs import access_log_bucket
from cdk_constructs.nag import acknowledge

# S3 prefix under which AWS Config writes its snapshots and history; CloudTrail writes under AWSLogs/ at the root.
CONFIG_PREFIX = "config"
# One trail per account, with a fixed name so that the archive's policies can name it before it exists.
TRAIL_NAME = "mlbase-trail"


@dataclass(frozen=True)
class ArchiveLocation:
    """Deterministic names of the archive, computable in any account without a cross-stack reference."""

    account: str
    region: str
    project: str

    @property
    def bucket_name(self) -> str:
        return f"{self.project}-log-archive-{self.account}-{self.region}"

    @property
    def key_alias(self) -> str:
        return f"alias/{self.project}-log-archive"

    @property
    def key_alias_arn(self) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:{self.key_alias}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket_name}"


class LogArchive(Construct):
    """Object-Locked, KMS-encrypted S3 archive that CloudTrail and AWS Config of several accounts deliver to.

    - Object Lock (mode and retention given), versioning, a customer-managed key with rotation, public access blocked,
      TLS enforced, lifecycle to Glacier Instant Retrieval and expiry after the lock ends.
    - A bucket policy denying object deletion and every Object Lock change to all principals but the break-glass role.
    - Server access logs go to a separate bucket (an Object Lock bucket cannot be its own log target).
    - Bucket and key policies admit CloudTrail and Config of `source_accounts` only, scoped with `aws:SourceArn`
      (CloudTrail, the fixed trail name) and `aws:SourceAccount` (Config).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        location: ArchiveLocation,
        source_accounts: Sequence[str],
        lock_mode: str,
        lock_days: int,
        transition_days: int,
        expiration_days: int,
        break_glass_role_name: str,
        flow_log_prefix: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.location = location
        self.break_glass_role = iam.Role(
            self,
            "BreakGlassRole",
            role_name=break_glass_role_name,
            description="The only principal allowed to delete archived audit logs or change their Object Lock settings",
            assumed_by=iam.AccountPrincipal(stack.account).with_conditions(
                {"Bool": {"aws:MultiFactorAuthPresent": "true"}, "NumericLessThan": {"aws:MultiFactorAuthAge": "900"}}
            ),
            max_session_duration=Duration.hours(1),
        )

        self.key = kms.Key(
            self,
            "Key",
            alias=location.key_alias,
            description="Encrypts the central audit log archive (CloudTrail and AWS Config of every account)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self._grant_services_on_key(source_accounts)

        self.access_log_bucket = access_log_bucket(self, "AccessLogBucket", expiration=Duration.days(expiration_days))

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=location.bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            object_lock_enabled=True,
            object_lock_default_retention=(
                s3.ObjectLockRetention.compliance(Duration.days(lock_days))
                if lock_mode == "COMPLIANCE"
                else s3.ObjectLockRetention.governance(Duration.days(lock_days))
            ),
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="archive/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ArchiveThenExpire",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=Duration.days(transition_days),
                        )
                    ],
                    expiration=Duration.days(expiration_days),
                    noncurrent_version_expiration=Duration.days(expiration_days),
                )
            ],
        )
        acknowledge(
            self.bucket,
            (
                "NIST.800.53.R5-S3BucketReplicationEnabled",
                "Object Lock in COMPLIANCE mode protects the archive; cross-region replication is a documented option.",
            ),
        )
        self._protect_objects()
        self._admit_services(source_accounts)
        if flow_log_prefix is not None:
            self._admit_flow_logs(stack.account, flow_log_prefix)

    def _protect_objects(self) -> None:
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyDeletionAndLockChangesExceptBreakGlass",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=[
                    "s3:DeleteObject",
                    "s3:DeleteObjectVersion",
                    "s3:PutObjectRetention",
                    "s3:PutObjectLegalHold",
                    "s3:BypassGovernanceRetention",
                    "s3:PutBucketObjectLockConfiguration",
                    "s3:PutLifecycleConfiguration",
                    "s3:PutBucketVersioning",
                ],
                resources=[self.bucket.bucket_arn, self.bucket.arn_for_objects("*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": self.break_glass_role.role_arn}},
            )
        )

    def _admit_services(self, accounts: Sequence[str]) -> None:
        region = self.location.region
        trail_arns = [f"arn:aws:cloudtrail:{region}:{account}:trail/{TRAIL_NAME}" for account in accounts]
        cloudtrail = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        config = iam.ServicePrincipal("config.amazonaws.com")
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailAclCheck",
                principals=[cloudtrail],
                actions=["s3:GetBucketAcl"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringEquals": {"aws:SourceArn": trail_arns}},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailWrite",
                principals=[cloudtrail],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"AWSLogs/{account}/*") for account in accounts],
                conditions={"StringEquals": {"aws:SourceArn": trail_arns}},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigAclCheck",
                principals=[config],
                actions=["s3:GetBucketAcl", "s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringEquals": {"aws:SourceAccount": list(accounts)}},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigWrite",
                principals=[config],
                actions=["s3:PutObject"],
                resources=[
                    self.bucket.arn_for_objects(f"{CONFIG_PREFIX}/AWSLogs/{account}/Config/*") for account in accounts
                ],
                conditions={"StringEquals": {"aws:SourceAccount": list(accounts)}},
            )
        )

    def _admit_flow_logs(self, account: str, prefix: str) -> None:
        """VPC flow logs of this account, delivered by the log delivery service under `prefix` (same account only)."""
        delivery = iam.ServicePrincipal("delivery.logs.amazonaws.com")
        source = {"aws:SourceAccount": account}
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FlowLogsAclCheck",
                principals=[delivery],
                actions=["s3:GetBucketAcl", "s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringEquals": source},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FlowLogsWrite",
                principals=[delivery],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{prefix}AWSLogs/{account}/*")],
                conditions={"StringEquals": {**source, "s3:x-amz-acl": "bucket-owner-full-control"}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FlowLogsEncrypt",
                principals=[delivery],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": source},
            )
        )

    def _grant_services_on_key(self, accounts: Sequence[str]) -> None:
        region = self.location.region
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncrypt",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:DescribeKey"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:SourceArn": [f"arn:aws:cloudtrail:{region}:{a}:trail/{TRAIL_NAME}" for a in accounts]
                    },
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": [
                            f"arn:aws:cloudtrail:*:{a}:trail/{TRAIL_NAME}" for a in accounts
                        ]
                    },
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigEncrypt",
                principals=[iam.ServicePrincipal("config.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": list(accounts)}},
            )
        )
