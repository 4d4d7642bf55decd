"""Photo service stack (production account): upload API, upload bucket, GPU queue workers, results API."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.access_logs import access_log_bucket
from cdk_constructs.gpu_queue_worker import GpuQueueWorker, WorkerSpec
from cdk_constructs.logs_key import is_plain_function
from cdk_constructs.nag import acknowledge
from cdk_constructs.sla_scaling import derive_policy
from cdk_constructs.upload_api import PhotoApi, UploadBucket
from stacks.base import ZonedStack
from stacks.config import REPO_ROOT, Platform, WorkerConfig


def worker_spec(worker: WorkerConfig) -> WorkerSpec:
    """Map a worker's YAML model onto the construct's typed arguments."""
    return WorkerSpec(
        name=worker.name,
        image_dir=REPO_ROOT / worker.image_dir,
        gpu_count=worker.gpu_count,
        cpu=worker.cpu,
        memory_mib=worker.memory_mib,
        instance_types=worker.capacity.instance_types,
        on_demand_base=worker.capacity.on_demand_base,
        on_demand_percentage_above_base=worker.capacity.on_demand_percentage_above_base,
        ami_ssm_parameter=worker.capacity.ami_ssm_parameter,
        root_volume_gib=worker.capacity.root_volume_gib,
        visibility_timeout=Duration.seconds(worker.queue.visibility_timeout_seconds),
        max_receive_count=worker.queue.max_receive_count,
        retention=Duration.days(worker.queue.retention_days),
        dead_letter_retention=Duration.days(worker.queue.dead_letter_retention_days),
        sla=Duration.minutes(worker.sla_minutes),
        stop_timeout=Duration.seconds(worker.stop_timeout_seconds),
        batch_size=worker.batch_size,
        model_uri=worker.model_uri,
        result_ttl_days=worker.result_ttl_days,
        environment=dict(worker.environment),
    )


class PhotoServiceStack(ZonedStack):
    """Everything between the phone's upload and the app reading its result."""

    def __init__(
        self, scope: Construct, id_: str, *, platform: Platform, vpc: ec2.IVpc, notifications: sns.ITopic
    ) -> None:
        super().__init__(
            scope,
            id_,
            zones=platform.config.accounts.production.availability_zones,
            description="mlbase photo service: uploads, GPU workers, results",
        )
        cfg = platform.config.photo_service
        workers = platform.workers

        access_logs = access_log_bucket(self, "AccessLogBucket", expiration=Duration.days(90))
        retention_days = max((w.upload_retention_days for w in workers), default=30)
        self.uploads = UploadBucket(self, "Uploads", retention=Duration.days(retention_days), access_logs=access_logs)

        self.results_table = dynamodb.Table(
            self,
            "ResultsTable",
            partition_key=dynamodb.Attribute(name="upload_key", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.results_table,
            (
                "NIST.800.53.R5-DynamoDBInBackupPlan",
                "Point-in-time recovery covers 35 days; results are re-derivable from uploads by re-queueing.",
            ),
        )
        topic_key = kms.Key(self, "ResultsTopicKey", enable_key_rotation=True, description="Encrypts results topic")
        self.results_topic = sns.Topic(self, "ResultsTopic", master_key=topic_key, enforce_ssl=True)

        self.api = PhotoApi(
            self,
            "Api",
            upload_bucket=self.uploads.bucket,
            results_table=self.results_table,
            auth=cfg.auth,
            max_upload_bytes=max((w.max_upload_mib for w in workers), default=20) * 1024 * 1024,
            url_expiry_seconds=cfg.url_expiry_seconds,
            jwt_issuer=cfg.jwt_issuer,
            jwt_audience=cfg.jwt_audience,
        )
        if cfg.auth == "iam":
            backend = iam.Role(
                self,
                "AppBackendRole",
                role_name=cfg.app_backend_role_name,
                assumed_by=iam.AccountRootPrincipal(),
                description="Assumed by the app backend to request uploads and read results (SigV4)",
            )
            self.api.grant_invoke(backend)
            acknowledge(
                backend,
                (
                    "NIST.800.53.R5-IAMNoInlinePolicy",
                    "The role's only inline policy is execute-api:Invoke on the two routes.",
                ),
            )

        self.workers: dict[str, GpuQueueWorker] = {}
        for worker in workers:
            service = GpuQueueWorker(
                self,
                "".join(part.title() for part in worker.name.split("-")),
                spec=worker_spec(worker),
                policy=derive_policy(worker),
                vpc=vpc,
                upload_bucket=self.uploads.bucket,
                upload_prefix=worker.input_prefix,
                results_table=self.results_table,
                results_topic=self.results_topic,
                alarm_topic=notifications,
            )
            self.uploads.bucket.add_event_notification(
                s3.EventType.OBJECT_CREATED,
                s3n.SqsDestination(service.queue),
                s3.NotificationKeyFilter(prefix=worker.input_prefix),
            )
            # SqsDestination admits S3 for the bucket's ARN only; the S3 guide's queue policy also requires the
            # bucket owner's account (grant-destinations-permissions-to-s3.html), since a deleted bucket's name can
            # be taken by anyone. A deny keeps the library's own statement as it is.
            service.queue.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="OnlyThisAccountsBuckets",
                    effect=iam.Effect.DENY,
                    principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                    actions=["sqs:SendMessage"],
                    resources=[service.queue.queue_arn],
                    conditions={"StringNotEquals": {"aws:SourceAccount": self.account}},
                )
            )
            self.workers[worker.name] = service
            CfnOutput(self, f"{service.node.id}QueueUrl", value=service.queue.queue_url)

        handler = _bucket_notifications_handler(self)
        if handler is not None:
            acknowledge(
                handler,
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                    "CDK's own handler that sets the bucket notification at deploy time; writes only its logs.",
                ),
            )
            acknowledge(
                self.uploads.bucket.node.find_child("Notifications"),
                ("NIST.800.53.R5-IAMNoInlinePolicy", "CDK-generated: s3:PutBucketNotification on this bucket only."),
            )
        CfnOutput(self, "ApiUrl", value=self.api.url or "", description="Upload and results API base URL")
        CfnOutput(self, "ResultsTopicArn", value=self.results_topic.topic_arn)


def _bucket_notifications_handler(scope: Construct) -> Construct | None:
    """The function aws-cdk-lib adds to a stack to set bucket notifications at deploy time, found by type.

    It is this stack's only function written as a plain `AWS::Lambda::Function` CfnResource (no VPC lives here, so no
    default-security-group handler); its construct ID is an internal of aws-cdk-lib, so it is not looked up by name.
    """
    found = [node.node.scope for node in scope.node.find_all() if is_plain_function(node)]
    if len(found) > 1:
        raise ValueError(f"expected at most one bucket-notifications handler, found {len(found)}")
    return found[0] if found and isinstance(found[0], Construct) else None
