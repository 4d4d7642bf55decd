"""A stack whose availability zones come from config, so that nothing in it triggers an account lookup at synth."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from constructs import Construct


class ZonedStack(Stack):
    """`Stack.availability_zones` answered from config.

    Several constructs (instances, endpoints, subnets picked by zone) ask the stack for its zones; the default asks
    the CDK CLI to look them up in the account, which needs credentials and makes synth depend on the account.
    """

    def __init__(self, scope: Construct, id_: str, *, zones: Sequence[str], description: str) -> None:
        super().__init__(scope, id_, description=description)
        self._zones = list(zones)

    @property
    def availability_zones(self) -> list[str]:
        return list(self._zones)
