"""Network stacks: management and production VPCs (production account), R&D VPC (research account), peering.

The management VPC holds the way in (an SSM bastion) and is peered with the production VPC (same account) and with
the R&D VPC (cross-account). Routes exist only between peered pairs, so production and R&D cannot reach each other.
Deploy order (docs/network.md): Research/Network, then Production/Network with `network.peering.research_vpc_id` set,
then Research/Network again for the accepter-side routes.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.bastion import Bastion
from cdk_constructs.logs_key import logs_key
from cdk_constructs.peering import PeeringAccepter, VpcPeering, peer_access_group
from cdk_constructs.retention import RETENTION_BY_DAYS
from cdk_constructs.session_preferences import SessionPreferences
from cdk_constructs.vpc import SSM_ENDPOINTS, WORKLOAD_ENDPOINTS, NetworkVpc
from stacks.audit import archive_location
from stacks.base import ZonedStack
from stacks.config import Platform, PlatformConfig

# Session Manager logs are audit records of who did what on the way in; the config has no field for them yet.
SESSION_LOG_RETENTION_DAYS = 365
# The management VPC has no NAT: its host reaches SSM (sessions), KMS (session encryption) and CloudWatch Logs
# (session logs) through endpoints, and nothing else.
MANAGEMENT_ENDPOINTS = (
    *SSM_ENDPOINTS,
    ec2.InterfaceVpcEndpointAwsService.KMS,
    ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
)


def retention_at_least(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention that keeps logs at least `days` (config allows any 1..3653)."""
    return RETENTION_BY_DAYS[min(d for d in RETENTION_BY_DAYS if d >= days)]


def accepter_role_arn(cfg: PlatformConfig) -> str:
    """The research account's peering accepter role, by its deterministic name."""
    return f"arn:aws:iam::{cfg.accounts.research.account_id}:role/{cfg.network.peering.accepter_role_name}"


def _flow_log_bucket(scope: Construct, cfg: PlatformConfig) -> s3.IBucket | None:
    if cfg.network.flow_logs.destination != "s3":
        return None
    return s3.Bucket.from_bucket_name(scope, "FlowLogArchive", archive_location(cfg).bucket_name)


class ProductionNetworkStack(ZonedStack):
    """Management VPC (SSM bastion) and production VPC, peered; the requester side of management <-> R&D."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(
            scope,
            id_,
            zones=platform.config.accounts.production.availability_zones,
            description="mlbase network: management and production VPCs, peering",
        )
        cfg = platform.config
        net = cfg.network
        zones = cfg.accounts.production.availability_zones
        retention = retention_at_least(net.flow_logs.retention_days)
        bucket = _flow_log_bucket(self, cfg)
        ssh = bool(net.bastion.ssh_allowed_cidrs)

        # No NAT: the management VPC reaches AWS through endpoints only; public subnets only for an SSH bastion.
        self.management = NetworkVpc(
            self,
            "Management",
            cidr=net.management.cidr,
            availability_zones=zones,
            nat_gateways=0,
            public_subnets=ssh,
            interface_endpoints=MANAGEMENT_ENDPOINTS,
            flow_log_retention=retention,
            flow_log_bucket=bucket,
        )
        self.management_vpc = self.management.vpc
        self.production = NetworkVpc(
            self,
            "Production",
            cidr=net.production.cidr,
            availability_zones=zones,
            nat_gateways=net.nat_gateways,
            interface_endpoints=WORKLOAD_ENDPOINTS,
            flow_log_retention=retention,
            flow_log_bucket=bucket,
        )
        self.production_vpc = self.production.vpc

        self.bastion = Bastion(
            self,
            "Bastion",
            vpc=self.management_vpc,
            private_subnets=self.management.private_subnets(),
            instance_type=net.bastion.instance_type,
            session_log_retention=retention_at_least(SESSION_LOG_RETENTION_DAYS),
            ssh_allowed_cidrs=net.bastion.ssh_allowed_cidrs,
        )
        # Every management subnet may hold the way in (private: SSM host; public: SSH bastion).
        management_subnets = list(self.management_vpc.select_subnets().subnets)

        self.production_peering = VpcPeering(
            self,
            "ManagementProductionPeering",
            vpc=self.management_vpc,
            cidr=net.management.cidr,
            subnets=management_subnets,
            peer_vpc_id=self.production_vpc.vpc_id,
            peer_cidr=net.production.cidr,
            peer_subnets=self.production.private_subnets(),
        )
        # Attach to production hosts that people reach from the management VPC (SSH, Jupyter... over peering).
        self.management_access = peer_access_group(
            self,
            "ProductionManagementAccess",
            vpc=self.production_vpc,
            peer_name="management",
            peer_cidr=net.management.cidr,
            ports=net.peering.admitted_ports,
        )

        self.research_peering: VpcPeering | None = None
        research = cfg.accounts.research
        if net.peering.research_vpc_id is not None:
            self.research_peering = VpcPeering(
                self,
                "ManagementResearchPeering",
                vpc=self.management_vpc,
                cidr=net.management.cidr,
                subnets=management_subnets,
                peer_vpc_id=net.peering.research_vpc_id,
                peer_cidr=net.research.cidr,
                peer_account=research.account_id,
                # Only for a peer in another region; CloudFormation expects it unset otherwise.
                peer_region=research.region if research.region != cfg.accounts.production.region else None,
                peer_role_arn=accepter_role_arn(cfg),
            )
            CfnOutput(
                self,
                "ResearchPeeringConnectionId",
                value=self.research_peering.connection_id,
                description="Management <-> R&D peering; deploy Research/Network again to add its routes",
            )
        CfnOutput(self, "ManagementVpcId", value=self.management_vpc.vpc_id)
        CfnOutput(self, "ProductionVpcId", value=self.production_vpc.vpc_id)
        CfnOutput(
            self,
            "BastionInstanceId",
            value=self.bastion.instance.instance_id,
            description="aws ssm start-session --target <this> (port forwarding: see docs/network.md)",
        )


class ResearchNetworkStack(ZonedStack):
    """R&D VPC and the accepter side of its peering with the management VPC."""

    def __init__(self, scope: Construct, id_: str, *, platform: Platform) -> None:
        super().__init__(
            scope,
            id_,
            zones=platform.config.accounts.research.availability_zones,
            description="mlbase network: R&D VPC and peering accepter",
        )
        cfg = platform.config
        net = cfg.network
        # Cross-account flow log delivery to the archive needs the archive to admit this account's log delivery;
        # until it does, R&D flow logs stay in this account's CloudWatch Logs (docs/network.md).
        self.research = NetworkVpc(
            self,
            "Research",
            cidr=net.research.cidr,
            availability_zones=cfg.accounts.research.availability_zones,
            nat_gateways=net.nat_gateways,
            interface_endpoints=WORKLOAD_ENDPOINTS,
            flow_log_retention=retention_at_least(net.flow_logs.retention_days),
        )
        self.research_vpc = self.research.vpc
        self.accepter = PeeringAccepter(
            self,
            "PeeringAccepter",
            vpc=self.research_vpc,
            subnets=self.research.private_subnets(),
            role_name=net.peering.accepter_role_name,
            policy_name=f"{cfg.project}-PeeringAccepter",
            requester_account=cfg.accounts.production.account_id,
            requester_cidr=net.management.cidr,
            connected=net.peering.research_vpc_id is not None,
        )
        # Attach to researcher instances that people reach from the management VPC.
        self.management_access = peer_access_group(
            self,
            "ResearchManagementAccess",
            vpc=self.research_vpc,
            peer_name="management",
            peer_cidr=net.management.cidr,
            ports=net.peering.admitted_ports,
        )
        CfnOutput(
            self,
            "ResearchVpcId",
            value=self.research_vpc.vpc_id,
            description="Paste into config network.peering.research_vpc_id, then deploy Production/Network",
        )
        CfnOutput(self, "PeeringAccepterRoleArn", value=self.accepter.role.role_arn)
        # Session Manager preferences of the research account: researchers' sessions are encrypted and logged.
        session_key = logs_key(self, "SessionKey", description="Encrypts R&D Session Manager sessions and their log")
        session_log_group = logs.LogGroup(
            self,
            "SessionLogGroup",
            encryption_key=session_key,
            retention=retention_at_least(SESSION_LOG_RETENTION_DAYS),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.session_preferences = SessionPreferences(
            self, "SessionPreferences", key=session_key, log_group=session_log_group
        )
