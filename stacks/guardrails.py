"""Guardrails stacks: notification path to Slack, security-group Config rules, budgets, SCPs."""

from __future__ import annotations

from typing import Literal

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_organizations as organizations
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.account_audit import TRAIL_LOG_GROUP_NAME
from cdk_constructs.budgets import CostBudget
from cdk_constructs.log_archive import TRAIL_NAME
from cdk_constructs.notifications import Notifications
from cdk_constructs.scps import ResearchScps
from cdk_constructs.security_baseline import BaselinePieces, SecurityBaseline
from cdk_constructs.sg_rules import SecurityGroupRules, WorldIngressException
from stacks.audit import archive_location
from stacks.config import ConfigError, Platform, PlatformConfig

AccountName = Literal["production", "research"]
OWNER_TAG = "Owner"


class GuardrailsStack(Stack):
    """One account's guardrails. `notifications_topic` is where alarms and findings go (e-mail and Slack).

    Both accounts: the notification path (`Notifications`), the security-group Config rules with their findings
    routed to the topic, the security baseline (`SecurityBaseline`, its findings and CIS alarms routed to the topic
    too), and the account's monthly budget. Research also gets one budget per researcher with a
    `monthly_budget_usd`, counted on the `Owner` tag. Production, the organization's management account, also holds
    the SCPs on the research account (`organization.manage_scps`) and, optionally, the research account itself
    (`organization.create_research_account`).
    """

    def __init__(self, scope: Construct, id_: str, *, platform: Platform, account: AccountName) -> None:
        super().__init__(scope, id_, description=f"mlbase guardrails ({account}): notifications, SG rules, budgets")
        self.platform = platform
        cfg = platform.config
        prefix = f"{cfg.project}-"
        self.notifications = Notifications(
            self, "Notifications", emails=cfg.notifications.emails, slack_secret_name=cfg.slack.secret_name
        )
        self.notifications_topic: sns.ITopic = self.notifications.topic
        self.security_group_rules = SecurityGroupRules(
            self,
            "SecurityGroupRules",
            name_prefix=prefix,
            allowed_ports=cfg.security_groups.allowed_world_ports,
            world_share=cfg.security_groups.world_share,
            exceptions=[
                WorldIngressException(group_id=e.group_id, ports=e.ports, reason=e.reason)
                for e in cfg.security_groups.world_ingress_exceptions
            ],
            topic=self.notifications_topic,
            auto_remediate=cfg.security_groups.auto_remediate,
        )
        # The trail's log group lives in this account's Audit stack (deployed first); found by its fixed name.
        self.security_baseline = SecurityBaseline(
            self,
            "SecurityBaseline",
            topic=self.notifications_topic,
            trail_log_group=logs.LogGroup.from_log_group_name(self, "TrailLogGroup", TRAIL_LOG_GROUP_NAME),
            pieces=BaselinePieces(**cfg.security_baseline.model_dump()),
            name_prefix=prefix,
        )
        self._budgets(cfg, account)
        if account == "production":
            self._organization(cfg, platform)

    def _budgets(self, cfg: PlatformConfig, account: AccountName) -> None:
        budget = cfg.budgets.production if account == "production" else cfg.budgets.research
        CostBudget(
            self,
            "AccountBudget",
            budget_name=f"{cfg.project}-{account}-monthly",
            monthly_usd=budget.monthly_usd,
            topic=self.notifications_topic,
            actual_percentages=budget.actual_percentages,
            forecast_percentages=budget.forecast_percentages,
            # The payer account's budgets see the whole organization's spend unless narrowed to its own.
            cost_filters={"LinkedAccount": [cfg.accounts.production.account_id]} if account == "production" else None,
        )
        if account != "research":
            return
        defaults = cfg.budgets.research
        for person in cfg.people:
            if person.workstation is None or person.workstation.monthly_budget_usd is None:
                continue
            CostBudget(
                self,
                f"ResearcherBudget{person.name.title().replace('.', '').replace('-', '')}",
                budget_name=f"{cfg.project}-researcher-{person.name}",
                monthly_usd=person.workstation.monthly_budget_usd,
                topic=self.notifications_topic,
                actual_percentages=defaults.actual_percentages,
                forecast_percentages=defaults.forecast_percentages,
                cost_filters={"TagKeyValue": [f"user:{OWNER_TAG}${person.name}"]},
            )

    def _organization(self, cfg: PlatformConfig, platform: Platform) -> None:
        org = cfg.organization
        research_id = cfg.accounts.research.account_id
        target_id = research_id
        if org.create_research_account:
            if org.research_account_email is None:
                raise ConfigError(
                    platform.source,
                    "organization.research_account_email",
                    None,
                    "is required when organization.create_research_account is true",
                )
            created = organizations.CfnAccount(
                self,
                "ResearchAccount",
                account_name=f"{cfg.project}-research",
                email=org.research_account_email,
            )
            # Closing an account is not something a stack update should ever do.
            created.apply_removal_policy(RemovalPolicy.RETAIN)
            target_id = created.attr_account_id
            CfnOutput(self, "ResearchAccountId", value=created.attr_account_id)
        if org.manage_scps:
            ResearchScps(
                self,
                "ResearchScps",
                name_prefix=f"{cfg.project}-Research",
                target_id=target_id,
                allowed_regions=cfg.allowed_regions,
                trail_arn=f"arn:aws:cloudtrail:*:{research_id}:trail/{TRAIL_NAME}",
                archive_bucket_arn=archive_location(cfg).bucket_arn,
                exempt_roles=[f"arn:aws:iam::{research_id}:role/cdk-*-cfn-exec-role-*"],
            )
