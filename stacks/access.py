"""Access stack (research account): roles assumable from production with MFA."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from stacks.config import Platform


class AccessStack(Stack):
    """ResearchDeveloper, ResearchReadOnly and PlatformAdmin roles with MFA-conditioned trust."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(scope, id_, description="mlbase access: roles assumable from production with MFA")
        self.platform = platform
