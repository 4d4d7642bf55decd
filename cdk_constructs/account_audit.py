"""One account's audit sources: a CloudTrail trail and an AWS Config recorder, delivering to the central archive."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_config as config
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.log_archive import CONFIG_PREFIX, TRAIL_NAME, ArchiveLocation
from cdk_constructs.logs_key import logs_key
from cdk_constructs.nag import acknowledge

# The trail's CloudWatch Logs group in every account.
TRAIL_LOG_GROUP_NAME = f"/aws/cloudtrail/{TRAIL_NAME}"


class AccountAudit(Construct):
    """CloudTrail (multi-region, global events, file validation, KMS) and AWS Config (all resources) for one account.

    Both deliver to the archive named by `archive`, which may live in another account: the trail writes into the
    locked archive bucket (the key named by its alias, which CloudTrail accepts), Config into the archive's Config
    bucket with the key's ARN (`archive_key_arn`: the PutDeliveryChannel API takes a key ARN). The trail also delivers
    to a KMS-encrypted CloudWatch Logs group with the given retention. Global resource types are recorded because each
    account has exactly one recorder, in its home region.

    With `create_recorder=False` the account keeps a recorder and delivery channel it already has (Control Tower, an
    earlier setup; AWS allows one of each per region), and none is created here.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        archive: ArchiveLocation,
        archive_key_arn: str,
        log_retention: logs.RetentionDays,
        create_recorder: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        bucket = s3.Bucket.from_bucket_name(self, "Archive", archive.bucket_name)
        archive_key = kms.Key.from_key_arn(self, "ArchiveKey", archive.key_alias_arn)

        self.logs_key = logs_key(self, "LogsKey", description="Encrypts this account's CloudTrail log group")
        self.log_group = logs.LogGroup(
            self,
            "TrailLogGroup",
            # Named, so that stacks of the same account (the CIS metric filters in Guardrails) find it without an
            # export that would pin this group.
            log_group_name=TRAIL_LOG_GROUP_NAME,
            encryption_key=self.logs_key,
            retention=log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=TRAIL_NAME,
            bucket=bucket,
            encryption_key=archive_key,
            is_multi_region_trail=True,
            include_global_service_events=True,
            enable_file_validation=True,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=self.log_group,
        )
        acknowledge(
            self.trail.node.find_child("LogsRole"),
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "CDK-generated role for CloudTrail's log delivery; its only policy allows writing to this log group.",
            ),
        )

        self.recorder_role: iam.Role | None = None
        if not create_recorder:
            return
        self.recorder_role = iam.Role(
            self,
            "RecorderRole",
            assumed_by=iam.ServicePrincipal("config.amazonaws.com"),
            description="AWS Config recorder: reads resource configurations of this account",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWS_ConfigRole")],
        )
        acknowledge(
            self.recorder_role,
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWS_ConfigRole]",
                "AWS_ConfigRole is the AWS-maintained read policy that tracks every resource type Config records.",
            ),
        )
        self.recorder = config.CfnConfigurationRecorder(
            self,
            "Recorder",
            role_arn=self.recorder_role.role_arn,
            recording_group=config.CfnConfigurationRecorder.RecordingGroupProperty(
                all_supported=True, include_global_resource_types=True
            ),
        )
        self.delivery_channel = config.CfnDeliveryChannel(
            self,
            "DeliveryChannel",
            s3_bucket_name=archive.config_bucket_name,
            s3_key_prefix=CONFIG_PREFIX,
            s3_kms_key_arn=archive_key_arn,
            config_snapshot_delivery_properties=config.CfnDeliveryChannel.ConfigSnapshotDeliveryPropertiesProperty(
                delivery_frequency="TwentyFour_Hours"
            ),
        )
        # Config refuses a delivery channel without a recorder.
        self.delivery_channel.node.add_dependency(self.recorder)
