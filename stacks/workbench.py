"""Workbench stack (research account): researchers' GPU instances, idle monitor, Slack bot."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import Platform


class WorkbenchStack(Stack):
    """A GPU workstation per researcher in the roster, the idle monitor and the /gpu Slack bot."""

    def __init__(
        self, scope: Construct, id_: str, *, platform: Platform, vpc: ec2.IVpc, notifications: sns.ITopic
    ) -> None:
        super().__init__(scope, id_, description="mlbase workbench: researcher GPU instances, idle monitor, Slack bot")
        self.platform, self.vpc, self.notifications = platform, vpc, notifications
