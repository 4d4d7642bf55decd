"""Audit stacks: the central archive and aggregator in production, trail and Config in every account."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_config as config
from constructs import Construct

from cdk_constructs.account_audit import AccountAudit
from cdk_constructs.log_archive import ArchiveLocation, LogArchive
from cdk_constructs.retention import retention
from cdk_constructs.vpc import FLOW_LOGS_PREFIX
from stacks.config import PlatformConfig


def archive_location(cfg: PlatformConfig) -> ArchiveLocation:
    """Where the central archive lives: the production account, in its home region."""
    prod = cfg.accounts.production
    return ArchiveLocation(account=prod.account_id, region=prod.region, project=cfg.project)


class ProductionAuditStack(Stack):
    """Central log archive, production's own trail and recorder, and the Config aggregator over both accounts."""

    def __init__(self, scope: Construct, id_: str, *, cfg: PlatformConfig) -> None:
        super().__init__(scope, id_, description="mlbase audit: central log archive, trail, Config and aggregator")
        accounts = [cfg.accounts.production.account_id, cfg.accounts.research.account_id]
        self.archive = LogArchive(
            self,
            "LogArchive",
            location=archive_location(cfg),
            source_accounts=accounts,
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
            log_retention=retention(cfg.audit.trail_log_retention_days),
        )
        # The trail's first delivery checks the bucket policy; create the archive first.
        self.audit.node.add_dependency(self.archive)
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
        self.audit = AccountAudit(
            self,
            "AccountAudit",
            archive=archive_location(cfg),
            log_retention=retention(cfg.audit.trail_log_retention_days),
        )
        config.CfnAggregationAuthorization(
            self,
            "AggregationAuthorization",
            authorized_account_id=cfg.accounts.production.account_id,
            authorized_aws_region=cfg.accounts.production.region,
        )
