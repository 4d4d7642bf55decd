"""VPC peering with least-access routes: requester side, cross-account accepter side, and the SG that admits a peer."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_constructs.nag import acknowledge, acknowledge_sdk_call_policy, acknowledge_sdk_call_provider

# The AWS SDK path of the connection ID in a DescribeVpcPeeringConnections answer.
_CONNECTION_ID = "VpcPeeringConnections.0.VpcPeeringConnectionId"


def add_routes(
    scope: Construct, prefix: str, *, subnets: Sequence[ec2.ISubnet], destination_cidr: str, connection_id: str
) -> list[ec2.CfnRoute]:
    """One route per distinct route table of `subnets`, to `destination_cidr` (one peer VPC, never wider)."""
    routes: list[ec2.CfnRoute] = []
    seen: set[str] = set()
    for subnet in subnets:
        table = subnet.route_table.route_table_id
        if table in seen:
            continue
        seen.add(table)
        routes.append(
            ec2.CfnRoute(
                scope,
                f"{prefix}{len(routes) + 1}",
                route_table_id=table,
                destination_cidr_block=destination_cidr,
                vpc_peering_connection_id=connection_id,
            )
        )
    return routes


def peer_access_group(
    scope: Construct, id_: str, *, vpc: ec2.IVpc, peer_name: str, peer_cidr: str, ports: Sequence[int]
) -> ec2.SecurityGroup:
    """A security group admitting `peer_cidr` on TCP `ports` and nothing else; attach it to hosts the peer may reach."""
    group = ec2.SecurityGroup(
        scope,
        id_,
        vpc=vpc,
        description=f"Admits the {peer_name} VPC ({peer_cidr}) on TCP {', '.join(map(str, ports))} only",
        allow_all_outbound=False,
    )
    for port in ports:
        group.add_ingress_rule(ec2.Peer.ipv4(peer_cidr), ec2.Port.tcp(port), f"From the {peer_name} VPC")
    return group


def allow_dns_resolution(scope: Construct, id_: str, *, connection_id: str, requester: bool, accepter: bool) -> None:
    """Let each named side resolve the other side's public DNS hostnames to private IPs (no CloudFormation property).

    Each account may set only the options of its own VPC, so a cross-account connection needs one call per side.
    """
    stack = Stack.of(scope)
    options: dict[str, object] = {"VpcPeeringConnectionId": connection_id}
    if requester:
        options["RequesterPeeringConnectionOptions"] = {"AllowDnsResolutionFromRemoteVpc": True}
    if accepter:
        options["AccepterPeeringConnectionOptions"] = {"AllowDnsResolutionFromRemoteVpc": True}
    call = cr.AwsSdkCall(
        service="EC2",
        action="modifyVpcPeeringConnectionOptions",
        parameters=options,
        physical_resource_id=cr.PhysicalResourceId.of(f"{connection_id}-dns"),
    )
    resource = cr.AwsCustomResource(
        scope,
        id_,
        on_create=call,
        on_update=call,
        install_latest_aws_sdk=False,
        policy=cr.AwsCustomResourcePolicy.from_statements(
            [
                iam.PolicyStatement(
                    actions=["ec2:ModifyVpcPeeringConnectionOptions"],
                    resources=[
                        stack.format_arn(service="ec2", resource="vpc-peering-connection", resource_name=connection_id)
                    ],
                )
            ]
        ),
    )
    acknowledge_sdk_call_policy(resource)
    acknowledge_sdk_call_provider(
        stack, "make the peering SDK calls that CloudFormation lacks (connection lookup, DNS resolution options)"
    )


class VpcPeering(Construct):
    """The requester side of a peering from `vpc` to a peer VPC, with routes to the peer's CIDR only.

    Routes go in the route tables of `subnets` (the subnets that talk to the peer), never in others. For a peer in
    the same account (`peer_role_arn` None), the peer's routes back to `cidr` are added in `peer_subnets` and DNS
    resolution is allowed on both sides; cross-account, the accepter assumes nothing: the requester uses
    `peer_role_arn` to accept, and the peer account adds its own routes (see PeeringAccepter).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        cidr: str,
        subnets: Sequence[ec2.ISubnet],
        peer_vpc_id: str,
        peer_cidr: str,
        peer_subnets: Sequence[ec2.ISubnet] = (),
        peer_account: str | None = None,
        peer_region: str | None = None,
        peer_role_arn: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.connection = ec2.CfnVPCPeeringConnection(
            self,
            "Connection",
            vpc_id=vpc.vpc_id,
            peer_vpc_id=peer_vpc_id,
            peer_owner_id=peer_account,
            peer_region=peer_region,
            peer_role_arn=peer_role_arn,
        )
        self.connection_id = self.connection.ref
        self.routes = add_routes(
            self, "Route", subnets=subnets, destination_cidr=peer_cidr, connection_id=self.connection_id
        )
        self.peer_routes = add_routes(
            self, "PeerRoute", subnets=peer_subnets, destination_cidr=cidr, connection_id=self.connection_id
        )
        allow_dns_resolution(
            self, "DnsResolution", connection_id=self.connection_id, requester=True, accepter=peer_role_arn is None
        )


class PeeringAccepter(Construct):
    """The accepter side of a cross-account peering, in the peer (accepter) account.

    - `role`: named `role_name` so that the requester can compute its ARN; trusts only `requester_account` and may only
      accept connections into `vpc` that come from a VPC of `requester_account`.
    - Once the connection exists (`connected`), finds it at deploy time (DescribeVpcPeeringConnections: active,
      into this VPC, from `requester_cidr` of `requester_account`), adds routes to `requester_cidr` in `subnets` and
      allows DNS resolution on this side. Until then, no routes.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: Sequence[ec2.ISubnet],
        role_name: str,
        policy_name: str,
        requester_account: str,
        requester_cidr: str,
        connected: bool,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        vpc_arn = stack.format_arn(service="ec2", resource="vpc", resource_name=vpc.vpc_id)
        any_connection = stack.format_arn(service="ec2", resource="vpc-peering-connection", resource_name="*")
        self.role = iam.Role(
            self,
            "Role",
            role_name=role_name,
            assumed_by=iam.AccountPrincipal(requester_account),
            description="Accepts VPC peering requests from the production account into this account's R&D VPC only",
        )
        # A fixed name under the project's prefix: the research boundary forbids new versions of such policies.
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            managed_policy_name=policy_name,
            description="Accept VPC peering into the R&D VPC from the production account's VPCs only",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="AcceptIntoThisVpc",
                    actions=["ec2:AcceptVpcPeeringConnection"],
                    resources=[any_connection],
                    conditions={
                        "ArnEquals": {"ec2:AccepterVpc": vpc_arn},
                        "ArnLike": {
                            "ec2:RequesterVpc": f"arn:{stack.partition}:ec2:*:{requester_account}:vpc/*",
                        },
                    },
                ),
                iam.PolicyStatement(sid="ThisVpc", actions=["ec2:AcceptVpcPeeringConnection"], resources=[vpc_arn]),
            ],
        )
        acknowledge(
            self.policy,
            (
                f"AwsSolutions-IAM5[Resource::{any_connection}]",
                "The connection ID is unknown until the requester creates it; the conditions pin the accepter VPC to"
                " this R&D VPC and the requester to a VPC of the production account.",
            ),
        )

        self.routes: list[ec2.CfnRoute] = []
        self.connection_id: str | None = None
        if not connected:
            return
        lookup = cr.AwsSdkCall(
            service="EC2",
            action="describeVpcPeeringConnections",
            parameters={
                "Filters": [
                    {"Name": "accepter-vpc-info.vpc-id", "Values": [vpc.vpc_id]},
                    {"Name": "requester-vpc-info.owner-id", "Values": [requester_account]},
                    {"Name": "requester-vpc-info.cidr-block", "Values": [requester_cidr]},
                    {"Name": "status-code", "Values": ["active"]},
                ]
            },
            physical_resource_id=cr.PhysicalResourceId.from_response(_CONNECTION_ID),
            output_paths=[_CONNECTION_ID],
        )
        find = cr.AwsCustomResource(
            self,
            "FindConnection",
            on_create=lookup,
            on_update=lookup,
            install_latest_aws_sdk=False,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["ec2:DescribeVpcPeeringConnections"], resources=["*"])]
            ),
        )
        acknowledge(
            find.node.find_child("CustomResourcePolicy"),
            (
                "AwsSolutions-IAM5[Resource::*]",
                "ec2:DescribeVpcPeeringConnections supports no resource-level permissions; it is read-only.",
            ),
        )
        acknowledge_sdk_call_policy(find)
        self.connection_id = find.get_response_field(_CONNECTION_ID)
        self.routes = add_routes(
            self, "Route", subnets=subnets, destination_cidr=requester_cidr, connection_id=self.connection_id
        )
        allow_dns_resolution(self, "DnsResolution", connection_id=self.connection_id, requester=False, accepter=True)
