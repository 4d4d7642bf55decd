"""Guardrails stacks: notification path to Slack, security-group Config rules, budgets, SCPs."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import Platform


class GuardrailsStack(Stack):
    """One account's guardrails. `notifications_topic` is where alarms and findings go (e-mail and Slack)."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform, account: str) -> None:
        super().__init__(scope, id_, description=f"mlbase guardrails ({account}): notifications, SG rules, budgets")
        key = kms.Key(self, "NotificationsKey", enable_key_rotation=True, description="Encrypts the notifications topic")
        self.notifications_topic = sns.Topic(self, "Notifications", master_key=key, enforce_ssl=True)
