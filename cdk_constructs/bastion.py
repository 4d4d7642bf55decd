"""The way into the platform's networks: an SSM Session Manager host, optionally also an SSH bastion for named CIDRs."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.logs_key import logs_key
from cdk_constructs.nag import acknowledge
from cdk_constructs.session_preferences import SessionPreferences
from cdk_constructs.vpc import ignore_explicit_zone

# Graviton families carry a `g` right after the generation digit (t4g, m7g, c7gn); GPU families start with g.
_GRAVITON = re.compile(r"^[a-z]+\d+g[a-z]*\.")
# The document Session Manager reads its account-wide preferences from (shell sessions); the name is fixed by AWS.


def cpu_type_of(instance_type: str) -> ec2.AmazonLinuxCpuType:
    """The AMI architecture an instance type needs: ARM_64 for Graviton families, X86_64 otherwise."""
    return ec2.AmazonLinuxCpuType.ARM_64 if _GRAVITON.match(instance_type) else ec2.AmazonLinuxCpuType.X86_64


def check_ssh_cidrs(cidrs: Sequence[str]) -> None:
    """Refuse a world-open SSH range even if a caller skipped config validation."""
    for cidr in cidrs:
        if ipaddress.ip_network(cidr, strict=True).prefixlen == 0:
            raise ValueError(f"SSH must not be open to the whole internet: {cidr}")


# The SSM agent's channel actions, none of which takes a resource; the agent also checks the session log group's
# encryption before streaming to it (logs:DescribeLogGroups).
SSM_AGENT = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "logs:DescribeLogGroups",
)


class Bastion(Construct):
    """An Amazon Linux 2023 host that people reach through SSM Session Manager, never directly.

    No inbound rules, no public IP, no key pair, IMDSv2 only, encrypted root volume, termination protection. Its role
    allows the SSM agent and session logging, nothing else; shell sessions are encrypted with `key` and logged to an
    encrypted log group (Session Manager preferences, when `session_preferences` is set: the document is per account
    and region, see docs/network.md). Port forwarding through it (AWS-StartPortForwardingSessionToRemoteHost)
    reaches hosts in peered VPCs.

    With `ssh_allowed_cidrs`, the host sits in a public subnet with a public IP and admits SSH from those ranges
    only; keys are pushed per session with EC2 Instance Connect, so there is still no long-lived key.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        private_subnets: Sequence[ec2.ISubnet],
        instance_type: str,
        session_log_retention: logs.RetentionDays,
        ssh_allowed_cidrs: Sequence[str] = (),
        session_preferences: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        check_ssh_cidrs(ssh_allowed_cidrs)
        self.key = logs_key(
            self, "SessionKey", description="Encrypts Session Manager sessions to the bastion and their log group"
        )
        self.session_log_group = logs.LogGroup(
            self,
            "SessionLogGroup",
            encryption_key=self.key,
            retention=session_log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Bastion: no inbound except configured SSH ranges; outbound to the VPC and peers",
            allow_all_outbound=True,
        )
        for cidr in ssh_allowed_cidrs:
            peer = ec2.Peer.ipv6(cidr) if ipaddress.ip_network(cidr).version == 6 else ec2.Peer.ipv4(cidr)
            self.security_group.add_ingress_rule(peer, ec2.Port.tcp(22), "SSH from a configured range")

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Bastion host: SSM agent and session logging only",
        )
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="Bastion host: SSM agent channels, session encryption and session logs",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="SsmAgent",
                    actions=list(SSM_AGENT),
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="SessionLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[self.session_log_group.log_group_arn],
                ),
                iam.PolicyStatement(
                    sid="SessionKey",
                    actions=["kms:Decrypt"],
                    resources=[self.key.key_arn],
                ),
            ],
        )
        acknowledge(
            self.policy,
            (
                "AwsSolutions-IAM5[Resource::*]",
                "The SSM agent's minimum (AmazonSSMManagedInstanceCore less its parameter, document and S3 access): "
                + ", ".join(SSM_AGENT)
                + ". The ssmmessages and ec2messages actions support no resource scoping; ssm:UpdateInstanceInformation"
                " could name the bastion's instance, which does not exist yet when its role is made (the role is"
                " in the instance's profile), and it only reports this instance's own agent status.",
            ),
        )

        public = bool(ssh_allowed_cidrs)
        subnets = (
            ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
            if public
            else ec2.SubnetSelection(subnets=list(private_subnets)[:1])
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=vpc,
            vpc_subnets=subnets,
            instance_type=ec2.InstanceType(instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=cpu_type_of(instance_type)),
            security_group=self.security_group,
            role=self.role,
            require_imdsv2=True,
            # Set only for the SSH bastion: CDK then moves the subnet into a network interface.
            associate_public_ip_address=True if public else None,
            detailed_monitoring=True,
            disable_api_termination=True,
            ssm_session_permissions=False,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(8, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3),
                )
            ],
        )
        ignore_explicit_zone(self.instance.instance)
        if public:
            acknowledge(
                self.instance,
                (
                    "NIST.800.53.R5-EC2InstanceNoPublicIp",
                    "The optional SSH bastion needs a public IP; its security group admits port 22 from the configured"
                    " CIDRs only (never 0.0.0.0/0, refused by config and by this construct).",
                ),
                (
                    "NIST.800.53.R5-EC2InstancesInVPC",
                    "The instance is in the management VPC's public subnet; with a public IP the CDK names the subnet"
                    " in the network interface, which this rule does not read.",
                ),
            )

        if session_preferences:
            self.session_preferences = SessionPreferences(
                self, "SessionPreferences", key=self.key, log_group=self.session_log_group
            )
