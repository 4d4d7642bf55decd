"""The two stages, one per account, and the app that holds them with the security gates attached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App, Aspects, Environment, Stage, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks
from constructs import Construct

from cdk_constructs.lambda_concurrency import ReservedConcurrency
from cdk_constructs.logs_key import EncryptedFunctionLogs
from stacks.access import AccessStack
from stacks.audit import ProductionAuditStack, ResearchAuditStack
from stacks.config import Platform
from stacks.delivery import DeliveryStack
from stacks.guardrails import GuardrailsStack
from stacks.identity import IdentityStack
from stacks.network import ProductionNetworkStack, ResearchNetworkStack
from stacks.photo_service import PhotoServiceStack
from stacks.workbench import WorkbenchStack


class ProductionStage(Stage):
    """The production (payer) account: audit archive, identity, guardrails, network, photo service."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        account = platform.config.accounts.production
        super().__init__(scope, id_, env=Environment(account=account.account_id, region=account.region))
        cfg = platform.config
        Aspects.of(self).add(ReservedConcurrency(enabled=cfg.lambdas.reserved_concurrency))
        Aspects.of(self).add(EncryptedFunctionLogs())
        if cfg.github is not None:
            self.delivery = DeliveryStack(self, "Delivery", github=cfg.github, account="production")
        self.audit = ProductionAuditStack(self, "Audit", cfg=cfg)
        self.identity = IdentityStack(self, "Identity", platform=platform)
        self.guardrails = GuardrailsStack(self, "Guardrails", platform=platform, account="production")
        # Config rules need the account's Config recorder, which the Audit stack creates.
        self.guardrails.add_stack_dependency(self.audit)
        self.network = ProductionNetworkStack(self, "Network", platform=platform)
        self.photo_service = PhotoServiceStack(
            self,
            "PhotoService",
            platform=platform,
            vpc=self.network.production_vpc,
            notifications=self.guardrails.notifications_topic,
        )


class ResearchStage(Stage):
    """The R&D account: access roles, audit delivery, guardrails, network, researchers' workbench."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        account = platform.config.accounts.research
        super().__init__(scope, id_, env=Environment(account=account.account_id, region=account.region))
        cfg = platform.config
        Aspects.of(self).add(ReservedConcurrency(enabled=cfg.lambdas.reserved_concurrency))
        Aspects.of(self).add(EncryptedFunctionLogs())
        if cfg.github is not None:
            self.delivery = DeliveryStack(self, "Delivery", github=cfg.github, account="research")
        self.access = AccessStack(self, "Access", platform=platform)
        self.audit = ResearchAuditStack(self, "Audit", cfg=cfg)
        self.guardrails = GuardrailsStack(self, "Guardrails", platform=platform, account="research")
        self.guardrails.add_stack_dependency(self.audit)
        self.network = ResearchNetworkStack(self, "Network", platform=platform)
        self.workbench = WorkbenchStack(
            self,
            "Workbench",
            platform=platform,
            vpc=self.network.research_vpc,
            notifications=self.guardrails.notifications_topic,
            slack_readers=[self.guardrails.notifications.notifier_role],
            sessions=self.network.session_preferences,
        )


CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def feature_flags() -> dict[str, Any]:
    """The feature flags from cdk.json, so that tests synthesizing in-process get the same templates as the CLI."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def build_app(platform: Platform, *, outdir: str | None = None) -> App:
    """Build the whole app for a loaded config: both stages, cdk-nag packs attached to the app."""
    app = App(outdir=outdir, analytics_reporting=False, context=feature_flags())
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app))
    ProductionStage(app, "Production", platform=platform)
    ResearchStage(app, "Research", platform=platform)
    return app
