"""The central, tamper-proof audit log archive (production account), and what other accounts need to deliver to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.access_logs import access_log_bucket
from cdk_constructs.nag import acknowledge, logical_id

# S3 prefix under which AWS Config writes its snapshots and history; CloudTrail writes under AWSLogs/ at the root.
CONFIG_PREFIX = "config"
# One trail per account, with a fixed name so that the archive's policies can name it before it exists.
TRAIL_NAME = "mlbase-trail"
# The CDK bootstrap's CloudFormation execution role: the one principal besides break-glass that may apply a reviewed
# change to the archive's settings (it is what `cdk deploy` runs as).
CDK_QUALIFIER = "hnb659fds"


def cfn_exec_role_arn(account: str, region: str, qualifier: str = CDK_QUALIFIER) -> str:
    return f"arn:aws:iam::{account}:role/cdk-{qualifier}-cfn-exec-role-{account}-{region}"


@dataclass(frozen=True)
class AuditSource:
    """An account whose trail and Config recorder deliver to the archive, and the home region of both."""

    account: str
    region: str

    @property
    def trail_arn(self) -> str:
        # A multi-region trail has one ARN, in its home region.
        return f"arn:aws:cloudtrail:{self.region}:{self.account}:trail/{TRAIL_NAME}"


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

    @property
    def config_bucket_name(self) -> str:
        return f"{self.project}-config-{self.account}-{self.region}"


class LogArchive(Construct):
    """Object-Locked, KMS-encrypted S3 archive of CloudTrail and AWS Config for several accounts.

    - The archive bucket: Object Lock (mode and retention given), versioning, a customer-managed key with rotation,
      public access blocked, TLS enforced, lifecycle to Glacier Instant Retrieval and expiry after the lock ends.
      CloudTrail of every source account writes here directly.
    - AWS Config cannot deliver to an Object Lock bucket (AWS::Config::DeliveryChannel reference), so it delivers to a
      Config bucket without Object Lock, which S3 Replication copies object by object into the locked archive (S3
      supports Object Lock destinations; retention is the archive's default). The Config bucket is as protected as
      the archive otherwise: same key, same deny on deletion, versioned.
    - Tamper-proofing, in both bucket policies and the key policy: only the break-glass role may delete objects or
      versions, delete the bucket policy, change retention or legal holds, disable the key or schedule its deletion;
      break-glass and the CDK bootstrap's CloudFormation execution role (a reviewed `cdk deploy`) may change the
      bucket policy, versioning, lifecycle, Object Lock configuration, replication and the key policy.
    - Server access logs go to a separate bucket (an Object Lock bucket cannot be a log target).
    - Bucket and key policies admit CloudTrail (by trail ARN, `aws:SourceArn`) and Config (by `aws:SourceAccount`)
      of `sources` only, each in the source's own home region.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        location: ArchiveLocation,
        sources: Sequence[AuditSource],
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
        self.sources = tuple(sources)
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
        self.deploy_role_arn = cfn_exec_role_arn(stack.account, stack.region)

        self.key = kms.Key(
            self,
            "Key",
            alias=location.key_alias,
            description="Encrypts the central audit log archive (CloudTrail and AWS Config of every account)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self._grant_services_on_key()
        self._protect_key()

        self.access_log_bucket = access_log_bucket(self, "AccessLogBucket", expiration=Duration.days(expiration_days))

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=location.bucket_name,
            **self._evidence_bucket_settings("archive/"),
            object_lock_enabled=True,
            object_lock_default_retention=(
                s3.ObjectLockRetention.compliance(Duration.days(lock_days))
                if lock_mode == "COMPLIANCE"
                else s3.ObjectLockRetention.governance(Duration.days(lock_days))
            ),
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

        self.replication_role = iam.Role(
            self,
            "ReplicationRole",
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description="S3 Replication: copies AWS Config's deliveries into the Object Lock archive",
        )
        self.config_bucket = s3.Bucket(
            self,
            "ConfigBucket",
            bucket_name=location.config_bucket_name,
            **self._evidence_bucket_settings("config/"),
            # Every object is copied into the locked archive; the Config bucket keeps a working copy for a while.
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAfterReplication",
                    expiration=Duration.days(transition_days),
                    noncurrent_version_expiration=Duration.days(transition_days),
                )
            ],
            replication_role=self.replication_role,
            replication_rules=[
                s3.ReplicationRule(
                    id="IntoLockedArchive",
                    priority=1,
                    destination=self.bucket,
                    kms_key=self.key,
                    sse_kms_encrypted_objects=True,
                    delete_marker_replication=False,
                    filter=s3.Filter(prefix=f"{CONFIG_PREFIX}/"),
                )
            ],
        )
        self._grant_replication()
        for bucket in (self.bucket, self.config_bucket):
            self._protect(bucket)
        self._grant_break_glass()
        self._admit_cloudtrail()
        self._admit_config()
        if flow_log_prefix is not None:
            self._admit_flow_logs(stack.account, flow_log_prefix)

    def _evidence_bucket_settings(self, access_log_prefix: str) -> dict[str, Any]:
        """What the archive and the Config bucket share: the archive key (with an S3 Bucket Key), no public access,
        TLS only, versioned, ACLs off, server access logs, kept when the stack goes."""
        return {
            "encryption": s3.BucketEncryption.KMS,
            "encryption_key": self.key,
            "bucket_key_enabled": True,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "versioned": True,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            "server_access_logs_bucket": self.access_log_bucket,
            "server_access_logs_prefix": access_log_prefix,
            "removal_policy": RemovalPolicy.RETAIN,
        }

    def _grant_replication(self) -> None:
        """The replication role's permissions, as S3 documents them for SSE-KMS objects, S3 Bucket Keys and an
        Object Lock destination (AmazonS3/latest/userguide/setting-repl-config-perm-overview.html,
        replication-config-for-kms-objects.html, object-lock-managing.html#object-lock-managing-replication)."""
        source, destination = self.config_bucket, self.bucket
        region = Stack.of(self).region
        policy = iam.Policy(
            self,
            "ReplicationPolicy",
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetReplicationConfiguration", "s3:ListBucket"], resources=[source.bucket_arn]
                ),
                iam.PolicyStatement(
                    actions=[
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                        "s3:GetObjectRetention",
                        "s3:GetObjectLegalHold",
                    ],
                    resources=[source.arn_for_objects(f"{CONFIG_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    actions=["s3:ReplicateObject", "s3:ReplicateTags"],
                    resources=[destination.arn_for_objects(f"{CONFIG_PREFIX}/*")],
                ),
                # With S3 Bucket Keys the encryption context is the bucket ARN, not the object's.
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[self.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": [source.bucket_arn, destination.bucket_arn]},
                    },
                ),
                iam.PolicyStatement(
                    actions=["kms:Encrypt"],
                    resources=[self.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": [destination.bucket_arn]},
                    },
                ),
            ],
        )
        policy.attach_to_role(self.replication_role)
        acknowledge(
            policy,
            (
                f"AwsSolutions-IAM5[Resource::<{logical_id(source)}.Arn>/{CONFIG_PREFIX}/*]",
                "Replication reads every object AWS Config writes under the config/ prefix; keys are dated.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::<{logical_id(destination)}.Arn>/{CONFIG_PREFIX}/*]",
                "Replicas keep their source keys under config/ in the archive.",
            ),
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "The replication role's one policy, next to the role it serves; nothing else attaches to it.",
            ),
        )

    def _grant_break_glass(self) -> None:
        """What only break-glass may do, granted to it (the denies exempt it; without a grant it could do nothing)."""
        buckets = (self.bucket, self.config_bucket)
        policy = iam.Policy(
            self,
            "BreakGlassPolicy",
            statements=[
                iam.PolicyStatement(
                    actions=[*BREAK_GLASS_ONLY_S3, *REVIEWED_DEPLOY_S3],
                    resources=[arn for b in buckets for arn in (b.bucket_arn, b.arn_for_objects("*"))],
                ),
                iam.PolicyStatement(
                    actions=[*BREAK_GLASS_ONLY_KMS, *REVIEWED_DEPLOY_KMS], resources=[self.key.key_arn]
                ),
            ],
        )
        policy.attach_to_role(self.break_glass_role)
        acknowledge(
            policy,
            *(
                (
                    f"AwsSolutions-IAM5[Resource::<{logical_id(b)}.Arn>/*]",
                    "Break-glass exists to act on any archived object (a legal hold, a court-ordered deletion).",
                )
                for b in buckets
            ),
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "The break-glass role's one policy, defined with the archive it guards so a reviewer reads both.",
            ),
        )

    def _exempt(self, *principals: str) -> dict[str, Any]:
        return {"ArnNotEquals": {"aws:PrincipalArn": list(principals)}}

    def _protect(self, bucket: s3.Bucket) -> None:
        resources = [bucket.bucket_arn, bucket.arn_for_objects("*")]
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyDeletionExceptBreakGlass",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(BREAK_GLASS_ONLY_S3),
                resources=resources,
                conditions=self._exempt(self.break_glass_role.role_arn),
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenySettingChangesExceptReviewedDeploy",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(REVIEWED_DEPLOY_S3),
                resources=resources,
                conditions=self._exempt(self.break_glass_role.role_arn, self.deploy_role_arn),
            )
        )

    def _protect_key(self) -> None:
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyKeyDestructionExceptBreakGlass",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(BREAK_GLASS_ONLY_KMS),
                resources=["*"],
                conditions=self._exempt(self.break_glass_role.role_arn),
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyKeyPolicyChangesExceptReviewedDeploy",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(REVIEWED_DEPLOY_KMS),
                resources=["*"],
                conditions=self._exempt(self.break_glass_role.role_arn, self.deploy_role_arn),
            )
        )

    def _admit_cloudtrail(self) -> None:
        # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-s3-bucket-policy-for-cloudtrail.html
        trail_arns = [source.trail_arn for source in self.sources]
        cloudtrail = iam.ServicePrincipal("cloudtrail.amazonaws.com")
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
                resources=[self.bucket.arn_for_objects(f"AWSLogs/{source.account}/*") for source in self.sources],
                conditions={"StringEquals": {"aws:SourceArn": trail_arns, "s3:x-amz-acl": "bucket-owner-full-control"}},
            )
        )

    def _admit_config(self) -> None:
        # https://docs.aws.amazon.com/config/latest/developerguide/s3-bucket-policy.html: the service principal
        # delivers for another account (and for any account whose recorder role lacks write access).
        config = iam.ServicePrincipal("config.amazonaws.com")
        accounts = {"aws:SourceAccount": [source.account for source in self.sources]}
        self.config_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigAclCheck",
                principals=[config],
                actions=["s3:GetBucketAcl", "s3:ListBucket"],
                resources=[self.config_bucket.bucket_arn],
                conditions={"StringEquals": accounts},
            )
        )
        self.config_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigWrite",
                principals=[config],
                actions=["s3:PutObject"],
                resources=[self.config_bucket.arn_for_objects(self.config_prefix(s.account)) for s in self.sources],
                conditions={"StringEquals": {**accounts, "s3:x-amz-acl": "bucket-owner-full-control"}},
            )
        )

    @staticmethod
    def config_prefix(account: str) -> str:
        """Where AWS Config writes an account's history and snapshots (key prefix `config`)."""
        return f"{CONFIG_PREFIX}/AWSLogs/{account}/Config/*"

    def grant_config_delivery(self, recorder_role: iam.Role, account: str) -> None:
        """Same-account delivery: AWS Config writes with the recorder's role, which then needs what the service
        principal gets elsewhere (config/latest/developerguide/s3-bucket-policy.html, s3-kms-key-policy.html)."""
        statements = [
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[self.config_bucket.arn_for_objects(self.config_prefix(account))]
            ),
            iam.PolicyStatement(
                actions=["s3:GetBucketAcl", "s3:ListBucket"], resources=[self.config_bucket.bucket_arn]
            ),
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.key.key_arn]),
        ]
        # Beside the role, not in the archive: the audit sources depend on the archive, never the other way.
        policy = iam.Policy(recorder_role, "ConfigDelivery", statements=statements)
        policy.attach_to_role(recorder_role)
        bucket_id = logical_id(self.config_bucket)
        acknowledge(
            policy,
            (
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{self.config_prefix(account)}]",
                "AWS Config names its history and snapshot objects by date under this account's prefix.",
            ),
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "The recorder role's delivery policy, beside the AWS-managed AWS_ConfigRole it also holds.",
            ),
        )

    def _admit_flow_logs(self, account: str, prefix: str) -> None:
        """VPC flow logs of this account, delivered by the log delivery service under `prefix` (same account only),
        as vpc/latest/userguide/flow-logs-s3.html and the CloudWatch Logs SSE-KMS page give the statements."""
        delivery = iam.ServicePrincipal("delivery.logs.amazonaws.com")
        source = {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": f"arn:aws:logs:{Stack.of(self).region}:{account}:*"},
        }
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FlowLogsAclCheck",
                principals=[delivery],
                actions=["s3:GetBucketAcl", "s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions=source,
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FlowLogsWrite",
                principals=[delivery],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{prefix}AWSLogs/{account}/*")],
                conditions={
                    **source,
                    "StringEquals": {"aws:SourceAccount": account, "s3:x-amz-acl": "bucket-owner-full-control"},
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="FlowLogsEncrypt",
                principals=[delivery],
                actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                resources=["*"],
                conditions=source,
            )
        )

    def _grant_services_on_key(self) -> None:
        # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html
        trail_arns = [source.trail_arn for source in self.sources]
        cloudtrail = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncrypt",
                principals=[cloudtrail],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceArn": trail_arns},
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": sorted(
                            {f"arn:aws:cloudtrail:*:{s.account}:trail/*" for s in self.sources}
                        )
                    },
                },
            )
        )
        # DescribeKey carries no encryption context: a statement of its own, scoped by the trail ARNs.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribeKey",
                principals=[cloudtrail],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceArn": trail_arns}},
            )
        )
        # With an S3 Bucket Key on the archive, CloudTrail also needs Decrypt to create or update the trail; AWS's
        # statement for it has no condition.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailBucketKeyDecrypt",
                principals=[cloudtrail],
                actions=["kms:Decrypt"],
                resources=["*"],
            )
        )
        # Source accounts look the key's ARN up by alias at deploy time (AWS Config's delivery channel needs the ARN).
        others = [s.account for s in self.sources if s.account != Stack.of(self).account]
        if others:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="SourceAccountsDescribeKey",
                    principals=[iam.AccountPrincipal(a) for a in others],
                    actions=["kms:DescribeKey"],
                    resources=["*"],
                )
            )
        # https://docs.aws.amazon.com/config/latest/developerguide/s3-kms-key-policy.html (service principal)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigEncrypt",
                principals=[iam.ServicePrincipal("config.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": [s.account for s in self.sources]}},
            )
        )


# Only break-glass: what would destroy evidence or make it unreadable.
BREAK_GLASS_ONLY_S3 = (
    "s3:BypassGovernanceRetention",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
)
# Break-glass or a reviewed deploy: settings that a pull request may legitimately change.
REVIEWED_DEPLOY_S3 = (
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock",
)
BREAK_GLASS_ONLY_KMS = (
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:ScheduleKeyDeletion",
)
# The trails name the key by its alias: re-pointing the alias is as much a change of key as a new key policy.
REVIEWED_DEPLOY_KMS = ("kms:DeleteAlias", "kms:PutKeyPolicy", "kms:UpdateAlias")
