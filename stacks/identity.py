"""Identity stack (production account): IAM groups for people; MFA required for everything but setting up MFA."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from stacks.config import Platform


class IdentityStack(Stack):
    """Groups and users of the production account, and their right to assume research roles."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(scope, id_, description="mlbase identity: groups, users, MFA policy")
        self.platform = platform
