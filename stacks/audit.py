"""Audit stacks: the central archive and aggregator in production, trail and Config in every account."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_config as config
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_constructs.account_audit import AccountAudit
from cdk_constructs.log_archive import ArchiveLocation, AuditSource, LogArchive
from cdk_constructs.nag import acknowledge, acknowledge_sdk_call_policy, acknowledge_sdk_call_provider
from cdk_constructs.retention import retention
from cdk_constructs.vpc import FLOW_LOGS_PREFIX
from stacks.config import PlatformConfig


def archive_location(cfg: PlatformConfig) -> ArchiveLocation:
    """Where the central archive lives: the production account, in its home region."""
    prod = cfg.accounts.production
    return ArchiveLocation(account=prod.account_id, region=prod.region, project=cfg.project)


def audit_sources(cfg: PlatformConfig) -> list[AuditSource]:
    """The accounts whose trail and recorder deliver to the archive, each in its own home region."""
    accounts = cfg.accounts
    return [AuditSource(a.account_id, a.region) for a in (accounts.production, accounts.research)]


class ProductionAuditStack(Stack):
    """Central log archive, production's own trail and recorder, and the Config aggregator over both accounts."""

    def __init__(self, scope: Construct, id_: str, *, cfg: PlatformConfig) -> None:
        super().__init__(scope, id_, description="mlbase audit: central log archive, trail, Config and aggregator")
        accounts = [cfg.accounts.production.account_id, cfg.accounts.research.account_id]
        self.archive = LogArchive(
            self,
            "LogArchive",
            location=archive_location(cfg),
            sources=audit_sources(cfg),
            lock_mode=cfg.audit.object_lock_mode,
            lock_days=cfg.audit.object_lock_days,
            transition_days=cfg.audit.transition_days,
            expiration_days=cfg.audit.expiration_days,
            break_glass_role_name=cfg.audit.break_glass_role_name,
            flow_log_prefix=FLOW_LOGS_PREFIX if cfg.network.flow_logs.destination == "s3" else None,
        )
        self.audit = AccountAudit(
            self,
            "AccountAudit",
            archive=archive_location(cfg),
            archive_key_arn=self.archive.key.key_arn,
            log_retention=retention(cfg.audit.trail_log_retention_days),
            create_recorder=cfg.audit.config_recorder.production == "create",
        )
        if self.audit.recorder_role is not None:
            self.archive.grant_config_delivery(self.audit.recorder_role, cfg.accounts.production.account_id)
        # The trail's first delivery checks the bucket policy; create the archive first.
        self.audit.node.add_dependency(self.archive)
        CfnOutput(self, "ArchiveKeyArn", value=self.archive.key.key_arn,
                  description="The archive's KMS key (research reads it by alias at deploy time)")  # fmt: skip
        regions = sorted({cfg.accounts.production.region, cfg.accounts.research.region})
        config.CfnConfigurationAggregator(
            self,
            "Aggregator",
            account_aggregation_sources=[
                config.CfnConfigurationAggregator.AccountAggregationSourceProperty(
                    account_ids=accounts, aws_regions=regions, all_aws_regions=False
                )
            ],
        )


class ResearchAuditStack(Stack):
    """The research account's trail and recorder, delivering to production's archive, and the aggregator's consent."""

    def __init__(self, scope: Construct, id_: str, *, cfg: PlatformConfig) -> None:
        super().__init__(scope, id_, description="mlbase audit: trail and Config delivering to the central archive")
        location = archive_location(cfg)
        self.audit = AccountAudit(
            self,
            "AccountAudit",
            archive=location,
            archive_key_arn=self._archive_key_arn(location),
            log_retention=retention(cfg.audit.trail_log_retention_days),
            create_recorder=cfg.audit.config_recorder.research == "create",
        )
        config.CfnAggregationAuthorization(
            self,
            "AggregationAuthorization",
            authorized_account_id=cfg.accounts.production.account_id,
            authorized_aws_region=cfg.accounts.production.region,
        )

    def _archive_key_arn(self, location: ArchiveLocation) -> str:
        """The archive key's ARN, read by alias from the production account at deploy time (DescribeKey).

        AWS Config's delivery channel needs the key ARN, whose key ID AWS picks at creation; the alias is fixed. The
        production key policy lets this account call DescribeKey and nothing else.
        """
        lookup = cr.AwsCustomResource(
            self,
            "ArchiveKeyLookup",
            on_update=cr.AwsSdkCall(
                service="KMS",
                action="describeKey",
                parameters={"KeyId": location.key_alias_arn},
                physical_resource_id=cr.PhysicalResourceId.of(location.key_alias_arn),
                output_paths=["KeyMetadata.Arn"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["kms:DescribeKey"],
                        resources=[f"arn:aws:kms:{location.region}:{location.account}:key/*"],
                        conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [location.key_alias]}},
                    )
                ]
            ),
            install_latest_aws_sdk=False,
        )
        acknowledge(
            lookup,
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:kms:{location.region}:{location.account}:key/*]",
                "The key ID is unknown until production creates the key; the statement is bound to the archive alias.",
            ),
        )
        acknowledge_sdk_call_policy(lookup)
        acknowledge_sdk_call_provider(self, "read the archive key's ARN from its alias (kms:DescribeKey)")
        return lookup.get_response_field("KeyMetadata.Arn")
