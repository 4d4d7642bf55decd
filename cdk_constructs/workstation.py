"""A researcher's GPU workstation: private, SSM-managed, built from a versioned mlbase AMI."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Size, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.nag import acknowledge

MANAGED_TAG = "mlbase:managed"
DATA_DEVICE = "/dev/sdf"


class Workstation(Construct):
    """One GPU instance in a private subnet: no public IP, no key pair (SSM Session Manager), IMDSv2, encrypted gp3.

    The AMI ID is resolved by CloudFormation at deploy time from the SSM parameter the Packer build wrote
    (`ami_parameter`), never at synth. Work lives on a separate encrypted data volume whose removal policy is
    SNAPSHOT: taking a person out of the roster deletes the instance and its root volume, and leaves a snapshot of
    their data that the platform team can restore or delete. Tags `Owner`, `SlackUserId` and `mlbase:managed` tie it
    to the idle monitor, the Slack bot and per-person budgets.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        owner: str,
        slack_user_id: str,
        instance_type: str,
        ami_parameter: str,
        data_volume_gib: int,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        availability_zone: str,
    ) -> None:
        super().__init__(scope, id_)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"Workstation of {owner}: SSM sessions and CloudWatch agent metrics",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore"),
                iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy"),
            ],
        )
        acknowledge(
            self.role,
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
                "AWS-maintained minimum for Session Manager access, the only way in (no SSH keys, no public IP).",
            ),
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/CloudWatchAgentServerPolicy]",
                "AWS-maintained policy for the agent that publishes GPU utilization for the idle monitor.",
            ),
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, availability_zones=[availability_zone]
            ),
            instance_type=ec2.InstanceType(instance_type),
            machine_image=ec2.MachineImage.from_ssm_parameter(ami_parameter, os=ec2.OperatingSystemType.LINUX),
            role=self.role,
            security_group=security_group,
            require_imdsv2=True,
            # The root volume carries Owner too: the research boundary lets only the owner detach or snapshot it.
            propagate_tags_to_volume_on_creation=True,
            detailed_monitoring=True,
            ssm_session_permissions=False,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/sda1",
                    volume=ec2.BlockDeviceVolume.ebs(100, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3),
                )
            ],
        )
        self.data_volume = ec2.Volume(
            self,
            "DataVolume",
            availability_zone=availability_zone,
            size=Size.gibibytes(data_volume_gib),
            volume_type=ec2.EbsDeviceVolumeType.GP3,
            encrypted=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        ec2.CfnVolumeAttachment(
            self,
            "DataVolumeAttachment",
            instance_id=self.instance.instance_id,
            volume_id=self.data_volume.volume_id,
            device=DATA_DEVICE,
        )
        for key, value in (("Owner", owner), ("SlackUserId", slack_user_id), (MANAGED_TAG, "true")):
            Tags.of(self).add(key, value)
        acknowledge(
            self.instance,
            (
                "AwsSolutions-EC29",
                "Deletion is the roster's decision; the data volume is snapshotted when a person is removed.",
            ),
        )
        acknowledge(
            self.data_volume,
            (
                "NIST.800.53.R5-EC2EBSInBackupPlan",
                "Researchers' scratch data; removal snapshots it. Durable results belong in S3 or a model registry.",
            ),
        )
