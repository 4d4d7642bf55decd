"""Network stacks: management and production VPCs (production account), R&D VPC (research account), peering."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.config import Platform


def _vpc(scope: Construct, id_: str, *, cidr: str, zones: tuple[str, ...], nat_gateways: int) -> ec2.Vpc:
    return ec2.Vpc(
        scope,
        id_,
        ip_addresses=ec2.IpAddresses.cidr(cidr),
        availability_zones=list(zones),
        nat_gateways=nat_gateways,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        ],
    )


class ProductionNetworkStack(Stack):
    """Management VPC (bastion) and production VPC, peered."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(scope, id_, description="mlbase network: management and production VPCs, peering")
        cfg = platform.config
        zones = cfg.accounts.production.availability_zones
        self.management_vpc = _vpc(
            self, "ManagementVpc", cidr=cfg.network.management.cidr, zones=zones, nat_gateways=cfg.network.nat_gateways
        )
        self.production_vpc = _vpc(
            self, "ProductionVpc", cidr=cfg.network.production.cidr, zones=zones, nat_gateways=cfg.network.nat_gateways
        )


class ResearchNetworkStack(Stack):
    """R&D VPC and the accepter side of its peering with the management VPC."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(scope, id_, description="mlbase network: R&D VPC and peering accepter")
        cfg = platform.config
        self.research_vpc = _vpc(
            self,
            "ResearchVpc",
            cidr=cfg.network.research.cidr,
            zones=cfg.accounts.research.availability_zones,
            nat_gateways=cfg.network.nat_gateways,
        )
