"""The GPU hosts of a queue worker: the ECS cluster, the launch template and Auto Scaling group of GPU instances,
the capacity provider (managed scaling off, managed draining on) and the teardown that lets `cdk destroy` finish.

Split from `gpu_queue_worker.py`; the resources are children of the `GpuQueueWorker` construct, so their construct
paths and logical IDs are the same as when they were built there. The group is sized by the step policies of
`gpu_worker_scaling.py`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aws_cdk import Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr

from cdk_constructs.nag import acknowledge, acknowledge_sdk_call_provider, logical_id

if TYPE_CHECKING:
    from cdk_constructs.gpu_queue_worker import GpuQueueWorker, WorkerSpec

# CloudWatch agent configuration for GPU hosts: utilization and memory per Auto Scaling group, every minute.
_GPU_AGENT_CONFIG = {
    "agent": {"metrics_collection_interval": 60, "omit_hostname": True},
    "metrics": {
        "namespace": "CWAgent",
        "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}", "InstanceId": "${aws:InstanceId}"},
        "aggregation_dimensions": [["AutoScalingGroupName"]],
        "metrics_collected": {"nvidia_gpu": {"measurement": ["utilization_gpu", "memory_used", "memory_total"]}},
    },
}


def add_hosts(worker: GpuQueueWorker, spec: WorkerSpec, vpc: ec2.IVpc) -> None:
    """The cluster and its GPU hosts, as children of `worker` (sets `cluster`, `host_security_group`,
    `auto_scaling_group` and `capacity_provider` on it)."""
    worker.cluster = ecs.Cluster(worker, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENHANCED)
    worker.host_security_group = ec2.SecurityGroup(
        worker,
        "HostSecurityGroup",
        vpc=vpc,
        description=f"{spec.name} GPU hosts: no inbound",
        allow_all_outbound=True,
    )
    user_data = ec2.UserData.for_linux()
    host_role = iam.Role(
        worker,
        "HostRole",
        assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
        description=f"{spec.name} GPU hosts: ECS agent",
    )
    acknowledge(
        host_role,
        ("NIST.800.53.R5-IAMNoInlinePolicy", "CDK-generated ECS container-instance policy for this cluster."),
        ("AwsSolutions-IAM5[Action::ecs:Submit*]", "ECS agent reports task and container state changes."),
        (
            "AwsSolutions-IAM5[Resource::*]",
            "ecs:DiscoverPollEndpoint, ecs:Poll, ecs:StartTelemetrySession, ecr:GetAuthorizationToken and"
            " cloudwatch:PutMetricData (bound to the CWAgent namespace by condition) support no resource scoping;"
            " logs:CreateLogStream and logs:PutLogEvents could be scoped to log groups, but aws-cdk-lib's ECS"
            " container-instance policy writes them on * itself.",
        ),
    )
    launch_template = ec2.LaunchTemplate(
        worker,
        "LaunchTemplate",
        machine_image=ec2.MachineImage.from_ssm_parameter(spec.ami_ssm_parameter, os=ec2.OperatingSystemType.LINUX),
        instance_type=ec2.InstanceType(spec.instance_types[0]),
        require_imdsv2=True,
        # One hop: the host's own processes (ECS agent, CloudWatch agent) reach the metadata service, nothing
        # behind a container's network namespace does. The tasks' credentials come from the ECS agent instead.
        http_put_response_hop_limit=1,
        user_data=user_data,
        security_group=worker.host_security_group,
        role=host_role,
        block_devices=[
            ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(
                    spec.root_volume_gib, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                ),
            )
        ],
        detailed_monitoring=True,
    )
    worker.auto_scaling_group = autoscaling.AutoScalingGroup(
        worker,
        "Hosts",
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        min_capacity=0 if worker.policy.hosts.managed else worker.policy.hosts.min_hosts,
        max_capacity=max(1, worker.policy.max_capacity),
        mixed_instances_policy=autoscaling.MixedInstancesPolicy(
            launch_template=launch_template,
            launch_template_overrides=[
                autoscaling.LaunchTemplateOverrides(instance_type=ec2.InstanceType(t)) for t in spec.instance_types
            ],
            instances_distribution=autoscaling.InstancesDistribution(
                on_demand_base_capacity=spec.on_demand_base,
                on_demand_percentage_above_base_capacity=spec.on_demand_percentage_above_base,
                # The types in the worker YAML's order, the first the fastest: its pools first while they have
                # capacity, so the fleet spends the fewest GPU-hours (docs/scaling.md, "Instance mix").
                spot_allocation_strategy=autoscaling.SpotAllocationStrategy.CAPACITY_OPTIMIZED_PRIORITIZED,
                on_demand_allocation_strategy=autoscaling.OnDemandAllocationStrategy.PRIORITIZED,
            ),
        ),
        capacity_rebalance=True,
        # Managed termination protection needs every host protected from scale-in; without managed scaling the
        # group's own policies scale in, and managed draining (below) lets a host's task stop first.
        new_instances_protected_from_scale_in=worker.policy.hosts.managed,
        group_metrics=[autoscaling.GroupMetrics.all()],
        notifications=None,
    )
    worker.capacity_provider = ecs.AsgCapacityProvider(
        worker,
        "CapacityProvider",
        auto_scaling_group=worker.auto_scaling_group,
        # Off (`derive_policy` sizes the hosts itself): from zero managed scaling starts two hosts and it keeps
        # an empty host about 15 minutes (15 datapoints, AmazonECS/latest/developerguide/
        # managed-scaling-behavior.html); the group's step policies in gpu_worker_scaling.py size it from the
        # same metrics as the tasks instead. Managed termination protection works only with managed scaling
        # (ECS API reference, AutoScalingGroupProviderUpdate).
        enable_managed_scaling=worker.policy.hosts.managed,
        enable_managed_termination_protection=worker.policy.hosts.managed,
        # Covers the group's scale-in (managed-instance-draining.html): a host the group picks while it runs a
        # task has the task stopped (the worker finishes its batch on SIGTERM) before it terminates, and the
        # service starts the replacement on a host that stays.
        enable_managed_draining=True,
        target_capacity_percent=100,
        machine_image_type=ecs.MachineImageType.AMAZON_LINUX_2,
    )
    worker.cluster.add_asg_capacity_provider(worker.capacity_provider)
    _teardown(worker, spec)
    # GPU utilization for the dashboard: the ECS GPU AMI ships no CloudWatch agent, so install it at boot and
    # publish nvidia-smi metrics per host group (the agent's own namespace, CWAgent).
    user_data.add_commands(
        "dnf install -y amazon-cloudwatch-agent",
        "cat > /opt/aws/amazon-cloudwatch-agent/etc/mlbase-gpu.json <<'EOF'",
        json.dumps(_GPU_AGENT_CONFIG, separators=(",", ":")),
        "EOF",
        "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s"
        " -c file:/opt/aws/amazon-cloudwatch-agent/etc/mlbase-gpu.json",
    )
    host_role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": "CWAgent"}},
        )
    )
    # The agent drains a host on a Spot interruption notice by setting it DRAINING itself; CDK's instance policy
    # leaves that call out (AmazonEC2ContainerServiceforEC2Role has it). Scoped to this cluster's instances.
    host_role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["ecs:UpdateContainerInstancesState"],
            resources=[
                f"arn:aws:ecs:{Stack.of(worker).region}:{Stack.of(worker).account}:container-instance/"
                f"{worker.cluster.cluster_name}/*"
            ],
        )
    )
    cluster_id = logical_id(worker.cluster)
    acknowledge(
        host_role,
        (
            f"AwsSolutions-IAM5[Resource::arn:aws:ecs:{Stack.of(worker).region}:{Stack.of(worker).account}:"
            f"container-instance/<{cluster_id}>/*]",
            "Container instance IDs are assigned as hosts join; the statement is bound to this cluster.",
        ),
    )
    # GPU scheduling and spot draining are off by default on the ECS agent. ECS_AWSVPC_BLOCK_IMDS cuts awsvpc
    # tasks off the instance metadata service, so a compromised decoder cannot take the host role's credentials.
    user_data.add_commands(
        "echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config",
        "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config",
        "echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config",
        f"echo ECS_CONTAINER_STOP_TIMEOUT={int(spec.stop_timeout.to_seconds())}s >> /etc/ecs/ecs.config",
    )
    acknowledge(
        worker.auto_scaling_group,
        (
            "AwsSolutions-AS3",
            "Scaling events are visible in ECS and CloudWatch; e-mail per launch would be noise at GPU fleet churn.",
        ),
        (
            "NIST.800.53.R5-EC2IMDSv2Enabled",
            "The launch template requires IMDSv2 (HttpTokens required); the rule reads launch configurations only.",
        ),
        (
            "AwsSolutions-EC26",
            "Root volume is encrypted in the launch template (cdk-nag reads only the ASG's own block devices).",
        ),
    )


def host_group_arn(worker: GpuQueueWorker) -> tuple[str, str]:
    """The host group's ARN for an IAM statement, and the cdk-nag IAM5 finding that statement raises: the group's
    UUID is only known after creation, so the ARN names the group and leaves the UUID a wildcard."""
    stack = Stack.of(worker)
    prefix = f"arn:aws:autoscaling:{stack.region}:{stack.account}:autoScalingGroup:*:autoScalingGroupName/"
    arn = prefix + worker.auto_scaling_group.auto_scaling_group_name
    return arn, f"AwsSolutions-IAM5[Resource::{prefix}<{logical_id(worker.auto_scaling_group)}>]"


def _teardown(worker: GpuQueueWorker, spec: WorkerSpec) -> None:
    """Let `cdk destroy` finish: with managed termination protection, ECS marks every host protected from
    scale-in, and CloudFormation's own ASG deletion waits forever for hosts it may not terminate (aws-cdk#18179).
    Without managed scaling new hosts are not protected, but hosts launched before that change keep their
    protection, and managed draining's lifecycle hook holds a host that still runs a task; the forced delete
    covers both.

    This custom resource is deleted after the capacity provider and its cluster association (they depend on it)
    and before the group (it depends on the group); its delete call force-deletes the group, which terminates
    the hosts regardless of protection. CloudFormation then finds the group gone and moves on.
    """
    asg_name = worker.auto_scaling_group.auto_scaling_group_name
    group_arn, group_finding = host_group_arn(worker)
    teardown = cr.AwsCustomResource(
        worker,
        "HostsTeardown",
        on_delete=cr.AwsSdkCall(
            service="AutoScaling",
            action="deleteAutoScalingGroup",
            parameters={"AutoScalingGroupName": asg_name, "ForceDelete": True},
            ignore_error_codes_matching="ValidationError",
        ),
        policy=cr.AwsCustomResourcePolicy.from_statements(
            [iam.PolicyStatement(actions=["autoscaling:DeleteAutoScalingGroup"], resources=[group_arn])]
        ),
        install_latest_aws_sdk=False,
    )
    teardown.node.add_dependency(worker.auto_scaling_group)
    worker.capacity_provider.node.add_dependency(teardown)
    acknowledge(
        teardown,
        (group_finding, "The group's UUID is only known after creation; the name pins this one group."),
        ("NIST.800.53.R5-IAMNoInlinePolicy", "CDK-generated: one delete call on this worker's host group."),
    )
    acknowledge_sdk_call_provider(Stack.of(worker), "delete this worker's host group once, at stack deletion")
