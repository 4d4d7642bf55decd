"""Photo service stack (production account): upload API, upload bucket, GPU queue workers, results API."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import Platform


class PhotoServiceStack(Stack):
    """Everything between the phone's upload and the app reading its result."""

    def __init__(
        self, scope: Construct, id_: str, *, platform: Platform, vpc: ec2.IVpc, notifications: sns.ITopic
    ) -> None:
        super().__init__(scope, id_, description="mlbase photo service: uploads, GPU workers, results")
        self.platform, self.vpc, self.notifications = platform, vpc, notifications
