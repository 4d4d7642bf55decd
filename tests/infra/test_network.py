"""Network stacks: VPCs, endpoints, flow logs, the bastion, peering, and every route table read as a graph.

Two syntheses: the example config (R&D VPC not yet deployed: no cross-account peering) and one variant with
`research_vpc_id` set, an SSH range, flow logs to the archive and NAT per AZ, so both deploy phases are checked.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Template

from cdk_constructs.bastion import check_ssh_cidrs, cpu_type_of
from stacks.network import retention_at_least
from tests.infra.conftest import resources_of, synth_variant

PROD, RESEARCH = "111111111111", "222222222222"
PROD_NET, RESEARCH_NET = "Production-Network", "Research-Network"
CIDRS = {"management": "10.10.0.0/20", "production": "10.20.0.0/16", "research": "10.30.0.0/16"}
ZONES = ["ap-northeast-1a", "ap-northeast-1c"]
RESEARCH_VPC_ID = "vpc-0123456789abcdef0"
SSH_RANGE = "203.0.113.0/24"
ARCHIVE = f"mlbase-log-archive-{PROD}-ap-northeast-1"
ADMITTED_PORTS = [22, 443, 8888]

Templates = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """The app once the R&D VPC exists, with an SSH range, S3 flow logs and a NAT gateway per AZ."""

    def edit(data: dict[str, Any]) -> None:
        data["network"]["peering"]["research_vpc_id"] = RESEARCH_VPC_ID
        data["network"]["bastion"]["ssh_allowed_cidrs"] = [SSH_RANGE]
        data["network"]["flow_logs"]["destination"] = "s3"
        data["network"]["nat_gateways"] = 2

    return synth_variant(tmp_path_factory.mktemp("network-variant"), edit)


# --- reading templates ------------------------------------------------------------------------------------------


def ref(value: Any) -> str:
    assert isinstance(value, dict), value
    assert set(value) == {"Ref"}, value
    return str(value["Ref"])


def vpc_names(t: dict[str, Any]) -> dict[str, str]:
    """VPC logical ID -> platform name (management/production/research), from the VPC's CIDR."""
    by_cidr = {cidr: name for name, cidr in CIDRS.items()}
    return {lid: by_cidr[r["Properties"]["CidrBlock"]] for lid, r in resources_of(t, "AWS::EC2::VPC").items()}


def vpc_of(t: dict[str, Any], name: str) -> str:
    (lid,) = [lid for lid, n in vpc_names(t).items() if n == name]
    return lid


def render(value: Any) -> str:
    """Flatten a Fn::Join of strings and references into text, references shown as <Ref> / <GetAtt>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return str(sep).join(render(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    raise AssertionError(f"unexpected value {value!r}")


def sdk_call(resource: dict[str, Any]) -> dict[str, Any]:
    """The AWS SDK call of an AwsCustomResource, references left as <LogicalId> placeholders."""
    call: dict[str, Any] = json.loads(render(resource["Properties"]["Create"]))
    return call


def connection_ends(t: dict[str, Any], connection: Any) -> frozenset[str]:
    """The two VPC names a route's peering connection joins, whether declared here or looked up at deploy time."""
    names = vpc_names(t)
    if "Ref" in connection:
        props = t["Resources"][ref(connection)]["Properties"]
        peer = props["PeerVpcId"]
        peer_name = names[ref(peer)] if isinstance(peer, dict) else {RESEARCH_VPC_ID: "research"}[peer]
        return frozenset({names[ref(props["VpcId"])], peer_name})
    lookup_id, path = connection["Fn::GetAtt"]
    assert path == "VpcPeeringConnections.0.VpcPeeringConnectionId"
    filters = {f["Name"]: f["Values"] for f in sdk_call(t["Resources"][lookup_id])["parameters"]["Filters"]}
    (accepter,) = filters["accepter-vpc-info.vpc-id"]
    (requester_cidr,) = filters["requester-vpc-info.cidr-block"]
    assert filters["status-code"] == ["active"]
    by_cidr = {cidr: name for name, cidr in CIDRS.items()}
    return frozenset({names[accepter.strip("<>")], by_cidr[requester_cidr]})


def route_graph(templates: Templates) -> set[tuple[str, str]]:
    """(from VPC, to VPC) for every route in every route table of the network stacks.

    A route's destination counts as reaching every platform VPC whose CIDR it overlaps, so a summary route
    (10.0.0.0/8) would show up as edges to all of them. Each peering route must use a connection between exactly
    its own VPC and the destination VPC; default routes must go to a NAT or internet gateway.
    """
    edges: set[tuple[str, str]] = set()
    for stack in (PROD_NET, RESEARCH_NET):
        t = templates[stack]
        names = vpc_names(t)
        tables = {
            lid: names[ref(r["Properties"]["VpcId"])] for lid, r in resources_of(t, "AWS::EC2::RouteTable").items()
        }
        for lid, route in resources_of(t, "AWS::EC2::Route").items():
            props = route["Properties"]
            source = tables[ref(props["RouteTableId"])]
            destination = ipaddress.ip_network(props["DestinationCidrBlock"])
            if destination.prefixlen == 0:
                assert {"NatGatewayId", "GatewayId"} & set(props), lid
                continue
            reached = {name for name, cidr in CIDRS.items() if destination.overlaps(ipaddress.ip_network(cidr))}
            assert reached, f"{lid}: {destination} is no platform VPC"
            for target in reached:
                assert connection_ends(t, props["VpcPeeringConnectionId"]) == {source, target}, lid
                edges.add((source, target))
    return edges


# --- the route graph --------------------------------------------------------------------------------------------

MGMT_PROD = {("management", "production"), ("production", "management")}
MGMT_RESEARCH = {("management", "research"), ("research", "management")}


def test_route_graph_is_management_to_production_and_research_only(variant: Templates) -> None:
    graph = route_graph(variant)
    assert graph == MGMT_PROD | MGMT_RESEARCH
    assert ("production", "research") not in graph
    assert ("research", "production") not in graph


def test_before_research_is_deployed_only_management_and_production_peer(templates: Templates) -> None:
    assert route_graph(templates) == MGMT_PROD
    assert not resources_of(templates[RESEARCH_NET], "Custom::AWS")
    assert len(resources_of(templates[PROD_NET], "AWS::EC2::VPCPeeringConnection")) == 1


def test_peering_routes_name_exactly_one_peer_cidr(variant: Templates) -> None:
    for stack in (PROD_NET, RESEARCH_NET):
        for route in resources_of(variant[stack], "AWS::EC2::Route").values():
            destination = route["Properties"]["DestinationCidrBlock"]
            assert destination == "0.0.0.0/0" or destination in CIDRS.values()


def test_workload_vpcs_route_to_management_from_private_subnets_only(variant: Templates) -> None:
    for stack, name in ((PROD_NET, "production"), (RESEARCH_NET, "research")):
        t = variant[stack]
        vpc = vpc_of(t, name)
        own = {
            lid for lid, r in resources_of(t, "AWS::EC2::RouteTable").items() if ref(r["Properties"]["VpcId"]) == vpc
        }
        routes = [r["Properties"] for r in resources_of(t, "AWS::EC2::Route").values()]
        public = {ref(r["RouteTableId"]) for r in routes if "GatewayId" in r}
        to_management = {ref(r["RouteTableId"]) for r in routes if r["DestinationCidrBlock"] == CIDRS["management"]}
        assert public, name
        assert to_management == own - public, name


# --- VPCs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "names"), [(PROD_NET, {"management", "production"}), (RESEARCH_NET, {"research"})])
def test_vpcs_take_cidrs_from_config(templates: Templates, stack: str, names: set[str]) -> None:
    vpcs = resources_of(templates[stack], "AWS::EC2::VPC").values()
    assert {v["Properties"]["CidrBlock"] for v in vpcs} == {CIDRS[n] for n in names}
    for vpc in vpcs:
        assert vpc["Properties"]["EnableDnsHostnames"] is True
        assert vpc["Properties"]["EnableDnsSupport"] is True


@pytest.mark.parametrize("stack", [PROD_NET, RESEARCH_NET])
def test_subnets_use_the_configured_zones_and_never_assign_public_ips(templates: Templates, stack: str) -> None:
    subnets = resources_of(templates[stack], "AWS::EC2::Subnet").values()
    assert {s["Properties"]["AvailabilityZone"] for s in subnets} == set(ZONES)
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)


def test_management_vpc_has_no_way_out_but_endpoints(templates: Templates) -> None:
    t = templates[PROD_NET]
    mgmt = vpc_of(t, "management")
    assert not [
        g for g in resources_of(t, "AWS::EC2::VPCGatewayAttachment").values() if ref(g["Properties"]["VpcId"]) == mgmt
    ]
    tables = {
        lid for lid, r in resources_of(t, "AWS::EC2::RouteTable").items() if ref(r["Properties"]["VpcId"]) == mgmt
    }
    defaults = [
        r for r in resources_of(t, "AWS::EC2::Route").values()
        if ref(r["Properties"]["RouteTableId"]) in tables and r["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0"
    ]  # fmt: skip
    assert defaults == []


def test_management_vpc_gets_public_subnets_only_for_an_ssh_bastion(variant: Templates) -> None:
    t = variant[PROD_NET]
    mgmt = vpc_of(t, "management")
    attachments = [
        g for g in resources_of(t, "AWS::EC2::VPCGatewayAttachment").values() if ref(g["Properties"]["VpcId"]) == mgmt
    ]
    assert len(attachments) == 1
    nat = resources_of(t, "AWS::EC2::NatGateway").values()
    subnets = resources_of(t, "AWS::EC2::Subnet")
    assert all(ref(subnets[ref(n["Properties"]["SubnetId"])]["Properties"]["VpcId"]) != mgmt for n in nat)


@pytest.mark.parametrize(("config", "production", "research"), [("default", 1, 1), ("variant", 2, 2)])
def test_nat_gateways_sized_by_config(
    templates: Templates, variant: Templates, config: str, production: int, research: int
) -> None:
    chosen = templates if config == "default" else variant
    assert len(resources_of(chosen[PROD_NET], "AWS::EC2::NatGateway")) == production
    assert len(resources_of(chosen[RESEARCH_NET], "AWS::EC2::NatGateway")) == research


def endpoint_services(t: dict[str, Any], vpc: str, kind: str) -> set[str]:
    return {
        render(e["Properties"]["ServiceName"]).rsplit(".", 1)[-1]
        if kind == "Gateway"
        else render(e["Properties"]["ServiceName"]).removeprefix("com.amazonaws.ap-northeast-1.")
        for e in resources_of(t, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"]["VpcEndpointType"] == kind and ref(e["Properties"]["VpcId"]) == vpc
    }


WORKLOAD = {"ecr.api", "ecr.dkr", "logs", "sqs", "ssm", "ssmmessages", "ec2messages"}


@pytest.mark.parametrize(
    ("stack", "name", "interface"),
    [
        (PROD_NET, "management", {"ssm", "ssmmessages", "ec2messages", "kms", "logs"}),
        (PROD_NET, "production", WORKLOAD),
        (RESEARCH_NET, "research", WORKLOAD),
    ],
)
def test_endpoint_sets(templates: Templates, stack: str, name: str, interface: set[str]) -> None:
    t = templates[stack]
    vpc = vpc_of(t, name)
    assert endpoint_services(t, vpc, "Gateway") == {"s3", "dynamodb"}
    assert endpoint_services(t, vpc, "Interface") == interface


def test_gateway_endpoints_serve_every_route_table(templates: Templates) -> None:
    t = templates[PROD_NET]
    tables = resources_of(t, "AWS::EC2::RouteTable")
    for e in resources_of(t, "AWS::EC2::VPCEndpoint").values():
        if e["Properties"]["VpcEndpointType"] != "Gateway":
            continue
        vpc = ref(e["Properties"]["VpcId"])
        mine = {lid for lid, r in tables.items() if ref(r["Properties"]["VpcId"]) == vpc}
        assert {ref(x) for x in e["Properties"]["RouteTableIds"]} == mine


@pytest.mark.parametrize(("stack", "name"), [(PROD_NET, "production"), (RESEARCH_NET, "research")])
def test_interface_endpoints_admit_https_from_their_vpc_only(templates: Templates, stack: str, name: str) -> None:
    t = templates[stack]
    vpc = vpc_of(t, name)
    groups = {
        ref_or_getatt
        for e in resources_of(t, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"]["VpcEndpointType"] == "Interface" and ref(e["Properties"]["VpcId"]) == vpc
        for ref_or_getatt in (g["Fn::GetAtt"][0] for g in e["Properties"]["SecurityGroupIds"])
    }
    (group,) = groups
    props = t["Resources"][group]["Properties"]
    assert props["SecurityGroupIngress"] == [
        {
            "CidrIp": CIDRS[name],
            "Description": "HTTPS from this VPC",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]
    for e in resources_of(t, "AWS::EC2::VPCEndpoint").values():
        if e["Properties"]["VpcEndpointType"] == "Interface":
            assert e["Properties"]["PrivateDnsEnabled"] is True


@pytest.mark.parametrize(("stack", "count"), [(PROD_NET, 2), (RESEARCH_NET, 1)])
def test_default_security_groups_are_stripped(templates: Templates, stack: str, count: int) -> None:
    t = templates[stack]
    restricted = resources_of(t, "Custom::VpcRestrictDefaultSG").values()
    assert sorted(r["Properties"]["DefaultSecurityGroupId"]["Fn::GetAtt"][0] for r in restricted) == sorted(
        resources_of(t, "AWS::EC2::VPC")
    )
    assert len(restricted) == count


# --- flow logs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [PROD_NET, RESEARCH_NET])
def test_every_vpc_logs_all_traffic_to_an_encrypted_log_group(templates: Templates, stack: str) -> None:
    t = templates[stack]
    flows = resources_of(t, "AWS::EC2::FlowLog").values()
    assert sorted(ref(f["Properties"]["ResourceId"]) for f in flows) == sorted(resources_of(t, "AWS::EC2::VPC"))
    groups = resources_of(t, "AWS::Logs::LogGroup")
    for flow in flows:
        props = flow["Properties"]
        assert props["TrafficType"] == "ALL"
        assert props["LogDestinationType"] == "cloud-watch-logs"
        group = groups[ref(props["LogGroupName"])]["Properties"]
        assert group["RetentionInDays"] == 90
        assert "Fn::GetAtt" in group["KmsKeyId"]


def test_production_flow_logs_can_go_to_the_archive(variant: Templates) -> None:
    flows = resources_of(variant[PROD_NET], "AWS::EC2::FlowLog").values()
    assert len(flows) == 2
    for flow in flows:
        props = flow["Properties"]
        assert props["LogDestinationType"] == "s3"
        assert props["LogDestination"] == f"arn:aws:s3:::{ARCHIVE}/vpc-flow-logs/"
        assert props["DestinationOptions"] == {
            "FileFormat": "parquet",
            "HiveCompatiblePartitions": True,
            "PerHourPartition": True,
        }


def test_research_flow_logs_stay_in_cloudwatch_even_with_s3_configured(variant: Templates) -> None:
    (flow,) = resources_of(variant[RESEARCH_NET], "AWS::EC2::FlowLog").values()
    assert flow["Properties"]["LogDestinationType"] == "cloud-watch-logs"


def test_flow_log_retention_rounds_up_to_a_cloudwatch_value() -> None:
    assert retention_at_least(90) == logs.RetentionDays.THREE_MONTHS
    assert retention_at_least(100) == logs.RetentionDays.FOUR_MONTHS
    assert retention_at_least(3653) == logs.RetentionDays.TEN_YEARS


# --- bastion ----------------------------------------------------------------------------------------------------


def bastion(t: dict[str, Any]) -> dict[str, Any]:
    (instance,) = resources_of(t, "AWS::EC2::Instance").values()
    props: dict[str, Any] = instance["Properties"]
    return props


def test_bastion_sits_in_a_private_management_subnet_without_public_ip(templates: Templates) -> None:
    t = templates[PROD_NET]
    props = bastion(t)
    assert "NetworkInterfaces" not in props
    subnet = t["Resources"][ref(props["SubnetId"])]["Properties"]
    assert ref(subnet["VpcId"]) == vpc_of(t, "management")
    assert subnet["MapPublicIpOnLaunch"] is False
    assert "KeyName" not in props


def test_bastion_security_group_has_no_ingress(templates: Templates) -> None:
    t = templates[PROD_NET]
    (group,) = [g["Fn::GetAtt"][0] for g in bastion(t)["SecurityGroupIds"]]
    assert "SecurityGroupIngress" not in t["Resources"][group]["Properties"]
    assert not [
        i
        for i in resources_of(t, "AWS::EC2::SecurityGroupIngress").values()
        if i["Properties"]["GroupId"]["Fn::GetAtt"][0] == group
    ]


def test_bastion_requires_imdsv2_and_encrypts_its_volume(
    template: Callable[[str], Template], templates: Templates
) -> None:
    t = template(PROD_NET)
    t.has_resource_properties(
        "AWS::EC2::LaunchTemplate", {"LaunchTemplateData": {"MetadataOptions": {"HttpTokens": "required"}}}
    )
    props = bastion(templates[PROD_NET])
    assert props["BlockDeviceMappings"] == [
        {"DeviceName": "/dev/xvda", "Ebs": {"Encrypted": True, "VolumeSize": 8, "VolumeType": "gp3"}}
    ]
    assert props["DisableApiTermination"] is True
    assert props["Monitoring"] is True
    # The AMI comes from the public SSM parameter at deploy time: no lookup during synth.
    assert "amazonlinuxlatestal2023" in ref(props["ImageId"])


def test_bastion_role_is_least_privilege(templates: Templates) -> None:
    t = templates[PROD_NET]
    roles = [
        r
        for r in resources_of(t, "AWS::IAM::Role").values()
        if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    ]
    (role,) = roles
    assert "AmazonSSMManagedInstanceCore" not in json.dumps(role)
    (policy,) = resources_of(t, "AWS::IAM::ManagedPolicy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {"SsmAgent", "SessionLogs", "SessionKey"}
    assert all(
        not a.endswith("*")
        for s in statements.values()
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert statements["SessionLogs"]["Resource"] != "*"
    assert statements["SessionKey"]["Action"] == "kms:Decrypt"


def test_sessions_are_encrypted_and_logged(templates: Templates) -> None:
    t = templates[PROD_NET]
    (document,) = resources_of(t, "Custom::SessionPreferences").values()
    props = document["Properties"]
    assert props["Name"] == "SSM-SessionManagerRunShell"
    # The content is a JSON string with the key and log group spliced in: find their logical IDs in it.
    content = json.dumps(props["Content"])
    (group_id,) = [lid for lid in resources_of(t, "AWS::Logs::LogGroup") if lid in content]
    group = t["Resources"][group_id]["Properties"]
    assert group["RetentionInDays"] == 365
    assert group["KmsKeyId"]["Fn::GetAtt"][0] in content


def test_ssh_bastion_admits_only_the_configured_range(variant: Templates) -> None:
    t = variant[PROD_NET]
    props = bastion(t)
    (nic,) = props["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is True
    (group,) = [g["Fn::GetAtt"][0] for g in nic["GroupSet"]]
    assert t["Resources"][group]["Properties"]["SecurityGroupIngress"] == [
        {
            "CidrIp": SSH_RANGE,
            "Description": "SSH from a configured range",
            "FromPort": 22,
            "IpProtocol": "tcp",
            "ToPort": 22,
        }
    ]
    assert "KeyName" not in props


@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_bastion_construct_refuses_world_open_ssh(world: str) -> None:
    with pytest.raises(ValueError, match="must not be open to the whole internet"):
        check_ssh_cidrs(["198.51.100.0/24", world])


def test_graviton_types_get_arm_images() -> None:
    assert cpu_type_of("t4g.micro").name == "ARM_64"
    assert cpu_type_of("c7gn.large").name == "ARM_64"
    assert cpu_type_of("t3.micro").name == "X86_64"
    assert cpu_type_of("g5.xlarge").name == "X86_64"


# --- peering ----------------------------------------------------------------------------------------------------


def test_management_production_peering_is_same_account(templates: Templates) -> None:
    t = templates[PROD_NET]
    (connection,) = resources_of(t, "AWS::EC2::VPCPeeringConnection").values()
    props = connection["Properties"]
    assert ref(props["VpcId"]) == vpc_of(t, "management")
    assert ref(props["PeerVpcId"]) == vpc_of(t, "production")
    assert not {"PeerOwnerId", "PeerRoleArn"} & set(props)


def test_management_research_peering_uses_the_accepter_role(variant: Templates) -> None:
    t = variant[PROD_NET]
    cross = [
        c["Properties"]
        for c in resources_of(t, "AWS::EC2::VPCPeeringConnection").values()
        if "PeerOwnerId" in c["Properties"]
    ]
    assert cross == [
        {
            "PeerOwnerId": RESEARCH,
            "PeerRoleArn": f"arn:aws:iam::{RESEARCH}:role/MlbasePeeringAccepter",
            "PeerVpcId": RESEARCH_VPC_ID,
            "VpcId": {"Ref": vpc_of(t, "management")},
        }
    ]


def test_accepter_role_trusts_production_and_accepts_into_this_vpc_only(templates: Templates) -> None:
    t = templates[RESEARCH_NET]
    (role,) = [
        r
        for r in resources_of(t, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName") == "MlbasePeeringAccepter"
    ]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}}
    ]
    (policy,) = resources_of(t, "AWS::IAM::ManagedPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in statements} == {"ec2:AcceptVpcPeeringConnection"}
    research_vpc_arn = f"arn:aws:ec2:ap-northeast-1:{RESEARCH}:vpc/<{vpc_of(t, 'research')}>"
    (accept,) = [s for s in statements if s["Sid"] == "AcceptIntoThisVpc"]
    assert render(accept["Condition"]["ArnEquals"]["ec2:AccepterVpc"]) == research_vpc_arn
    assert accept["Condition"]["ArnLike"] == {"ec2:RequesterVpc": f"arn:aws:ec2:*:{PROD}:vpc/*"}
    (vpc_statement,) = [s for s in statements if s["Sid"] == "ThisVpc"]
    assert render(vpc_statement["Resource"]) == research_vpc_arn


def test_accepter_routes_follow_the_active_connection_from_management(variant: Templates) -> None:
    t = variant[RESEARCH_NET]
    lookups = [sdk_call(r) for r in resources_of(t, "Custom::AWS").values()]
    (find,) = [c for c in lookups if c["action"] == "describeVpcPeeringConnections"]
    assert {f["Name"]: f["Values"] for f in find["parameters"]["Filters"]} == {
        "accepter-vpc-info.vpc-id": [f"<{vpc_of(t, 'research')}>"],
        "requester-vpc-info.owner-id": [PROD],
        "requester-vpc-info.cidr-block": [CIDRS["management"]],
        "status-code": ["active"],
    }


@pytest.mark.parametrize(
    ("config", "stack", "expected"),
    [
        ("default", PROD_NET, [{"requester", "accepter"}]),
        ("variant", PROD_NET, [{"requester", "accepter"}, {"requester"}]),
        ("variant", RESEARCH_NET, [{"accepter"}]),
    ],
)
def test_dns_resolution_is_allowed_on_each_side_its_account_owns(
    templates: Templates, variant: Templates, config: str, stack: str, expected: list[set[str]]
) -> None:
    t = (templates if config == "default" else variant)[stack]
    calls = [
        c
        for c in map(sdk_call, resources_of(t, "Custom::AWS").values())
        if c["action"] == "modifyVpcPeeringConnectionOptions"
    ]
    sides = [
        {key.removesuffix("PeeringConnectionOptions").lower() for key in c["parameters"] if key.endswith("Options")}
        for c in calls
    ]
    assert sorted(sides, key=len, reverse=True) == expected
    for call in calls:
        for key, options in call["parameters"].items():
            if key.endswith("Options"):
                assert options == {"AllowDnsResolutionFromRemoteVpc": True}


@pytest.mark.parametrize(("stack", "name"), [(PROD_NET, "production"), (RESEARCH_NET, "research")])
def test_workload_access_group_admits_management_on_configured_ports_only(
    templates: Templates, stack: str, name: str
) -> None:
    t = templates[stack]
    (group,) = [
        g["Properties"] for g in resources_of(t, "AWS::EC2::SecurityGroup").values()
        if g["Properties"]["GroupDescription"].startswith("Admits the management VPC")
    ]  # fmt: skip
    assert ref(group["VpcId"]) == vpc_of(t, name)
    ingress = group["SecurityGroupIngress"]
    assert sorted(r["FromPort"] for r in ingress) == ADMITTED_PORTS
    assert all(
        r["CidrIp"] == CIDRS["management"] and r["IpProtocol"] == "tcp" and r["FromPort"] == r["ToPort"]
        for r in ingress
    )
    # allow_all_outbound=False renders the CDK's placeholder rule that matches no traffic.
    assert [e["CidrIp"] for e in group["SecurityGroupEgress"]] == ["255.255.255.255/32"]


def test_stacks_publish_ids_for_the_next_deploy_step(templates: Templates, variant: Templates) -> None:
    assert {"ResearchVpcId", "PeeringAccepterRoleArn"} <= set(templates[RESEARCH_NET]["Outputs"])
    assert {"ManagementVpcId", "ProductionVpcId", "BastionInstanceId"} <= set(templates[PROD_NET]["Outputs"])
    assert "ResearchPeeringConnectionId" not in templates[PROD_NET]["Outputs"]
    assert "ResearchPeeringConnectionId" in variant[PROD_NET]["Outputs"]


def test_no_network_template_mentions_a_world_open_ingress(templates: Templates, variant: Templates) -> None:
    for chosen in (templates, variant):
        for stack in (PROD_NET, RESEARCH_NET):
            text = json.dumps(
                [
                    g["Properties"].get("SecurityGroupIngress", [])
                    for g in resources_of(chosen[stack], "AWS::EC2::SecurityGroup").values()
                ]
            )
            assert "0.0.0.0/0" not in text
            assert "::/0" not in text
