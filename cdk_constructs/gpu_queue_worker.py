"""A GPU queue worker on ECS with EC2 capacity: queue + DLQ + alarms, GPU hosts, the service, SLA-driven scaling.

Scaling is the policy `cdk_constructs.sla_scaling.derive_policy` computes from the worker's YAML (its module
docstring has the formula), deployed here without change so that `python -m tools.scaling_sim` simulates exactly
what runs:

- target tracking on backlog per task = (visible + in flight) / desired tasks, 1-minute metric math, target =
  images one task clears in `acceptable` seconds (a share of the SLA less the time a new task needs to start);
- a guard: with `wake: sla`, when the running tasks cannot clear the backlog before the SLA, exactly the tasks that
  can (`wake: immediate`: steps on the age of the oldest message, 25/50/75% of the SLA add 10%/25%/100% of max
  tasks);
- with `min_tasks: 0`, a wake-up step policy (when the SLA's slack runs low, or on the first photo with
  `wake: immediate`) and an idle policy that returns to zero once the fleet has drained what it was woken for;
  with `wake: sla` the worker itself does that at once (gpu_worker_release.py), the alarm being the fallback.
  In-flight messages count everywhere, so the fleet never shrinks under work in hand; tasks holding messages
  also set ECS task scale-in protection;
- the GPU hosts: ECS managed scaling is off and EC2 Auto Scaling step policies (ExactCapacity) size the group from
  the same metrics, the wake and idle alarms acting on the tasks and the hosts at once; managed draining lets a
  task stop before its host terminates.

Unlike CDK's QueueProcessingEc2Service, the queue scales on an SLA rather than on depth alone, busy tasks are never
scaled in, and the GPU hosts go as soon as the tasks do, not after the capacity provider's empty-host tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.gpu_worker_hosts import add_hosts
from cdk_constructs.gpu_worker_monitoring import add_alarms, add_dashboard
from cdk_constructs.gpu_worker_release import add_fleet_release
from cdk_constructs.gpu_worker_scaling import add_sla_scaling
from cdk_constructs.logs_key import logs_key
from cdk_constructs.nag import acknowledge, logical_id
from cdk_constructs.sla_model import ScalingPolicy


@dataclass(frozen=True)
class WorkerSpec:
    """What the construct needs of a worker definition (the stack maps the YAML model onto it)."""

    name: str
    image_dir: Path
    gpu_count: int
    cpu: int
    memory_mib: int
    instance_types: tuple[str, ...]
    on_demand_base: int
    on_demand_percentage_above_base: int
    ami_ssm_parameter: str
    root_volume_gib: int
    visibility_timeout: Duration
    max_receive_count: int
    retention: Duration
    dead_letter_retention: Duration
    sla: Duration
    stop_timeout: Duration
    batch_size: int
    model_uri: str
    result_ttl_days: int
    environment: dict[str, str]


class GpuQueueWorker(Construct):
    """Queue, dead-letter queue, GPU ECS service and its scaling, alarms and dashboard for one worker.

    Queues, task and service are built here; the hosts in `gpu_worker_hosts.py`, scaling in `gpu_worker_scaling.py`,
    the fleet release in `gpu_worker_release.py`, alarms and the dashboard in `gpu_worker_monitoring.py`, all as
    children of this construct.
    """

    cluster: ecs.Cluster
    host_security_group: ec2.SecurityGroup
    auto_scaling_group: autoscaling.AutoScalingGroup
    capacity_provider: ecs.AsgCapacityProvider
    scalable_target: appscaling.ScalableTarget
    step_alarms: dict[str, cloudwatch.Alarm]
    dlq_alarm: cloudwatch.Alarm
    sla_alarm: cloudwatch.Alarm
    dashboard: cloudwatch.Dashboard

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        spec: WorkerSpec,
        policy: ScalingPolicy,
        vpc: ec2.IVpc,
        upload_bucket: s3.IBucket,
        upload_prefix: str,
        results_table: dynamodb.ITable,
        results_topic: sns.ITopic,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id_)
        self.spec, self.policy = spec, policy
        self._queues(spec)
        add_hosts(self, spec, vpc)
        self._service(spec, upload_bucket, upload_prefix, results_table, results_topic)
        add_sla_scaling(self, policy)
        add_fleet_release(self, policy)
        add_alarms(self, spec, alarm_topic)
        add_dashboard(self, spec)

    # --- queue ----------------------------------------------------------------------------------------------------

    def _queues(self, spec: WorkerSpec) -> None:
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=spec.dead_letter_retention,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=spec.retention,
            visibility_timeout=spec.visibility_timeout,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=spec.max_receive_count
            ),
        )

    # --- task and service -----------------------------------------------------------------------------------------

    def _service(
        self,
        spec: WorkerSpec,
        upload_bucket: s3.IBucket,
        upload_prefix: str,
        results_table: dynamodb.ITable,
        results_topic: sns.ITopic,
    ) -> None:
        stack = Stack.of(self)
        self.task_definition = ecs.Ec2TaskDefinition(self, "TaskDefinition", network_mode=ecs.NetworkMode.AWS_VPC)
        self.task_definition.add_volume(name="tmp")
        key = logs_key(self, "LogsKey", description=f"{spec.name} worker logs")
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        image = ecs.ContainerImage.from_asset(
            str(spec.image_dir), platform=ecr_assets.Platform.LINUX_AMD64, exclude=["**/__pycache__", "tests"]
        )
        self.container = self.task_definition.add_container(
            "Worker",
            image=image,
            cpu=spec.cpu,
            memory_limit_mib=spec.memory_mib,
            gpu_count=spec.gpu_count,
            user="10001",
            privileged=False,
            readonly_root_filesystem=True,
            stop_timeout=spec.stop_timeout,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=spec.name, log_group=self.log_group),
            environment={
                "MLBASE_QUEUE_URL": self.queue.queue_url,
                "MLBASE_UPLOAD_BUCKET": upload_bucket.bucket_name,
                "MLBASE_RESULTS_TABLE": results_table.table_name,
                "MLBASE_RESULTS_TOPIC_ARN": results_topic.topic_arn,
                "MLBASE_MODEL_URI": spec.model_uri,
                "MLBASE_BATCH_SIZE": str(spec.batch_size),
                "MLBASE_VISIBILITY_TIMEOUT_S": str(int(spec.visibility_timeout.to_seconds())),
                "MLBASE_STOP_TIMEOUT_S": str(int(spec.stop_timeout.to_seconds())),
                "MLBASE_RESULT_TTL_DAYS": str(spec.result_ttl_days),
                "MLBASE_WORKER_NAME": spec.name,
                "MLBASE_METRICS_NAMESPACE": "mlbase/worker",
                "MLBASE_DEVICE": "cuda",
                **spec.environment,
            },
        )
        self.container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))  # noqa: S108

        role = self.task_definition.task_role
        upload_bucket.grant_read(role, f"{upload_prefix}*")
        self.queue.grant_consume_messages(role)
        results_table.grant_write_data(role)
        results_topic.grant_publish(role)
        if spec.model_uri.startswith("s3://"):
            bucket, _, prefix = spec.model_uri.removeprefix("s3://").partition("/")
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"arn:aws:s3:::{bucket}/{prefix}*"])
            )
        # The ECS agent's task-protection endpoint calls UpdateTaskProtection with the task's own credentials.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                resources=[f"arn:aws:ecs:{stack.region}:{stack.account}:task/{self.cluster.cluster_name}/*"],
            )
        )

        self.service_security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.cluster.vpc,
            description=f"{spec.name} tasks: no inbound, HTTPS out to AWS APIs",
            allow_all_outbound=True,
        )
        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            # Kept in the template although a stack update then sets the count back to it: without a DesiredCount
            # CloudFormation creates the service with one task and waits for it to run, and with min_tasks 0 its host
            # comes only from the group's follow alarm, which names the service and so is created after it.
            desired_count=self.policy.min_capacity,
            security_groups=[self.service_security_group],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider=self.capacity_provider.capacity_provider_name, weight=1)
            ],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            min_healthy_percent=50,
            max_healthy_percent=200,
            placement_strategies=[ecs.PlacementStrategy.packed_by_memory()],
        )
        # Delete the service (and so its tasks) before the cluster's capacity provider association; otherwise
        # CloudFormation may remove the association first and fail with "capacity provider is in use".
        # The association is created inside the cluster construct at synthesis; a dependency on the whole construct
        # covers it.
        self.service.node.add_dependency(self.cluster)
        bucket_id = logical_id(upload_bucket)
        cluster_id = logical_id(self.cluster)
        model_findings: list[tuple[str, str]] = []
        if spec.model_uri.startswith("s3://"):
            bucket, _, prefix = spec.model_uri.removeprefix("s3://").partition("/")
            model_findings.append(
                (
                    f"AwsSolutions-IAM5[Resource::arn:aws:s3:::{bucket}/{prefix}*]",
                    "Reads the model version named in the worker YAML: weights and metadata under that prefix only.",
                )
            )
        acknowledge(
            role,
            (
                "NIST.800.53.R5-IAMNoInlinePolicy",
                "The task role's only policy is generated by CDK grants on this worker's queue, bucket prefix and table.",
            ),
            (
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{upload_prefix}*]",
                "Reads any photo under the upload prefix: which photo is decided by the queue messages.",
            ),
            ("AwsSolutions-IAM5[Action::s3:GetObject*]", "grant_read on the upload prefix (object and its tags)."),
            ("AwsSolutions-IAM5[Action::s3:GetBucket*]", "grant_read: bucket location and settings for the SDK."),
            ("AwsSolutions-IAM5[Action::s3:List*]", "grant_read: lists the upload prefix only."),
            ("AwsSolutions-IAM5[Action::kms:GenerateDataKey*]", "Reads KMS-encrypted uploads (bucket key)."),
            (
                f"AwsSolutions-IAM5[Resource::arn:aws:ecs:{stack.region}:{stack.account}:task/<{cluster_id}>/*]",
                "Task scale-in protection: task IDs are not known in advance; limited to this cluster.",
            ),
            *model_findings,
        )
        execution_role = self.task_definition.obtain_execution_role()
        acknowledge(
            execution_role,
            ("NIST.800.53.R5-IAMNoInlinePolicy", "CDK-generated policy: pull this image and write this log group."),
            ("AwsSolutions-IAM5[Resource::*]", "ecr:GetAuthorizationToken supports no resource scoping."),
        )
        acknowledge(
            self.task_definition,
            ("AwsSolutions-ECS2", "Environment holds resource names only; no secrets are passed to the worker."),
        )
