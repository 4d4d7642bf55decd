"""Workbench stack (research account): researchers' GPU workstations, the idle monitor and the /gpu Slack bot."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.alarms import alarm_on_any
from cdk_constructs.logs_key import logs_key
from cdk_constructs.nag import acknowledge
from cdk_constructs.python_lambda import PythonLambda
from cdk_constructs.secret_policy import restrict_secret
from cdk_constructs.session_preferences import SessionPreferences
from cdk_constructs.workstation import MANAGED_TAG, Workstation
from stacks.access import PLATFORM_ADMIN, role_arn
from stacks.base import ZonedStack
from stacks.config import Platform, PlatformConfig
from stacks.gpu_versions import load_ami_versions

# Slack sends one request per typed command: a team typing fast stays far below this, a flood from elsewhere does not.
BOT_RATE_LIMIT = 10  # requests per second, steady
BOT_BURST_LIMIT = 20
# Request metadata only; bodies (with the signed command) stay out of the access log.
BOT_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationError": "$context.integrationErrorMessage",
}


class WorkbenchStack(ZonedStack):
    """A GPU workstation per researcher in the roster, the idle monitor and the /gpu Slack bot."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        platform: Platform,
        vpc: ec2.IVpc,
        notifications: sns.ITopic,
        slack_readers: Sequence[iam.IRole] = (),
        sessions: SessionPreferences | None = None,
    ) -> None:
        super().__init__(
            scope,
            id_,
            zones=platform.config.accounts.research.availability_zones,
            description="mlbase workbench: researcher GPU instances, idle monitor, Slack bot",
        )
        cfg = platform.config
        researchers = [p for p in cfg.people if p.workstation is not None]
        amis = load_ami_versions()

        self.security_group = ec2.SecurityGroup(
            self,
            "WorkstationSecurityGroup",
            vpc=vpc,
            description="Researcher workstations: reachable only from the management VPC, on the admitted ports",
            allow_all_outbound=True,
        )
        for port in cfg.network.peering.admitted_ports:
            self.security_group.add_ingress_rule(
                ec2.Peer.ipv4(cfg.network.management.cidr), ec2.Port.tcp(port), f"management VPC, port {port}"
            )

        zones = cfg.accounts.research.availability_zones
        self.workstations: dict[str, Workstation] = {}
        for i, person in enumerate(researchers):
            ws = person.workstation
            # The config loader guarantees both for anyone with a workstation.
            assert ws is not None
            assert person.slack_user_id is not None
            self.workstations[person.name] = Workstation(
                self,
                "".join(part.title() for part in person.name.replace(".", "-").split("-")),
                owner=person.name,
                slack_user_id=person.slack_user_id,
                instance_type=ws.instance_type,
                ami_parameter=amis[ws.ami_version].ssm_parameter_name,
                data_volume_gib=ws.volume_gib,
                vpc=vpc,
                security_group=self.security_group,
                availability_zone=zones[i % len(zones)],
            )
            if sessions is not None:
                sessions.grant_instance(self.workstations[person.name].role)

        roster = json.dumps(
            [
                {"name": p.name, "slack_user_id": p.slack_user_id, "instance_type": p.workstation.instance_type}
                for p in researchers
                if p.workstation is not None
            ],
            separators=(",", ":"),
        )
        slack_secret = secretsmanager.Secret.from_secret_name_v2(self, "SlackSecret", cfg.slack.secret_name)
        signing_secret = secretsmanager.Secret.from_secret_name_v2(self, "SigningSecret", cfg.slack.signing_secret_name)
        wb = cfg.workbench
        managed = {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}}
        instances_arn = self.format_arn(service="ec2", resource="instance", resource_name="*")

        failures = sqs.Queue(
            self,
            "IdleMonitorFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.idle_monitor = PythonLambda(
            self,
            "IdleMonitor",
            name="idle_monitor",
            description="Warns researchers in Slack about idle GPU instances; optionally stops them",
            calls_slack=True,
            environment={
                "MLBASE_SLACK_SECRET_ARN": slack_secret.secret_arn,
                "MLBASE_ROSTER": roster,
                "MLBASE_PRICES": json.dumps(wb.hourly_prices_usd, sort_keys=True, separators=(",", ":")),
                "MLBASE_GPU_IDLE_PERCENT": f"{wb.gpu_idle_percent:g}",
                "MLBASE_CPU_IDLE_PERCENT": f"{wb.cpu_idle_percent:g}",
                "MLBASE_LOOKBACK_HOURS": str(wb.lookback_hours),
                "MLBASE_AUTO_STOP_AFTER_CHECKS": str(wb.auto_stop_after_checks),
                **({"MLBASE_SLACK_CHANNEL": cfg.slack.channel} if cfg.slack.channel else {}),
            },
            timeout=Duration.seconds(120),
            reserved_concurrency=1,
            unscoped_actions=["ec2:DescribeInstances", "cloudwatch:GetMetricData"],
            dead_letter_queue=failures,
        )
        slack_secret.grant_read(self.idle_monitor.function)
        monitor = self.idle_monitor.function
        monitor.add_to_role_policy(
            iam.PolicyStatement(actions=["ec2:DescribeInstances", "cloudwatch:GetMetricData"], resources=["*"])
        )
        monitor.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateTags", "ec2:DeleteTags"],
                resources=[instances_arn],
                conditions={"ForAllValues:StringEquals": {"aws:TagKeys": ["mlbase:idle-checks", "mlbase:idle-since"]}},
            )
        )
        monitor.add_to_role_policy(
            iam.PolicyStatement(actions=["ec2:StopInstances"], resources=[instances_arn], conditions=managed)
        )
        events.Rule(
            self,
            "IdleSchedule",
            description=f"Idle GPU check every {wb.idle_check_hours} hours",
            schedule=events.Schedule.rate(Duration.hours(wb.idle_check_hours)),
            targets=[targets.LambdaFunction(monitor, retry_attempts=2, dead_letter_queue=failures)],
        )
        alarm_on_any(
            self,
            "IdleMonitorFailuresAlarm",
            description="Idle monitor runs failed after retries (messages in its dead-letter queue)",
            metric=failures.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            action=cw_actions.SnsAction(notifications),
        )

        self._bot(cfg, roster, slack_secret, signing_secret, instances_arn, managed, notifications)
        for fn in (self.idle_monitor, self.jobs):
            acknowledge(
                fn.role,
                (
                    f"AwsSolutions-IAM5[Resource::arn:aws:ec2:{self.region}:{self.account}:instance/*]",
                    "Instance IDs change when the roster changes; access is conditioned on the mlbase:managed tag.",
                ),
            )
        # Only the functions that read them, and platform admins, may touch the Slack secrets.
        admins = [role_arn(cfg, PLATFORM_ADMIN)]
        restrict_secret(self, "SlackSecretPolicy", secret_name=cfg.slack.secret_name, admin_role_arns=admins,
                        readers=[*slack_readers, self.idle_monitor.role, self.jobs.role])  # fmt: skip
        restrict_secret(self, "SigningSecretPolicy", secret_name=cfg.slack.signing_secret_name,
                        admin_role_arns=admins, readers=[self.bot.role, self.jobs.role])  # fmt: skip
        CfnOutput(self, "SlackCommandUrl", value=f"{self.bot_api.api_endpoint}/slack/commands",
                  description="Request URL for the /gpu slash command in the Slack app")  # fmt: skip

    def _bot(
        self,
        cfg: PlatformConfig,
        roster: str,
        slack_secret: secretsmanager.ISecret,
        signing_secret: secretsmanager.ISecret,
        instances_arn: str,
        managed: dict[str, dict[str, str]],
        notifications: sns.ITopic,
    ) -> None:
        """The /gpu bot: the HTTP function behind the API, the job function that does the EC2 work, their table."""
        wb = cfg.workbench
        # Each signed request is recorded once (a conditional put): a replay within Slack's 5-minute window is refused.
        self.seen_signatures = dynamodb.Table(
            self,
            "SeenSignatures",
            partition_key=dynamodb.Attribute(name="key", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.seen_signatures,
            (
                "NIST.800.53.R5-DynamoDBInBackupPlan",
                "Signatures live minutes (TTL); nothing in the table is worth restoring beyond point-in-time recovery.",
            ),
        )
        common_env = {
            "MLBASE_SIGNING_SECRET_ARN": signing_secret.secret_arn,
            "MLBASE_SEEN_TABLE": self.seen_signatures.table_name,
            "MLBASE_ROSTER": roster,
            "MLBASE_ADMIN_SLACK_IDS": ",".join(wb.admins),
            "MLBASE_FALLBACK_INSTANCE_TYPES": json.dumps(
                {k: list(v) for k, v in wb.fallback_instance_types.items()}, sort_keys=True, separators=(",", ":")
            ),
        }

        self.job_failures = sqs.Queue(
            self,
            "GpuJobFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.job_failures, ("AwsSolutions-SQS3", "This queue is the on-failure destination of the /gpu jobs.")
        )
        self.jobs = PythonLambda(
            self,
            "GpuJobs",
            name="chatops",
            function_name=f"{cfg.project}-gpu-jobs",
            description="Slack /gpu jobs: verifies the signed request again, then starts, stops, keeps, lists",
            environment={**common_env, "MLBASE_SLACK_SECRET_ARN": slack_secret.secret_arn},
            timeout=Duration.seconds(60),
            reserved_concurrency=10,
            unscoped_actions=["ec2:DescribeInstances"],
            calls_slack=True,
            no_dead_letter_reason=(
                "Invoked asynchronously by the bot with an on-failure destination (the job-failures queue, alarmed),"
                " which keeps the failed event with its error, more than a dead-letter queue would."
            ),
        )
        jobs = self.jobs.function
        # No retries: an EC2 action is not repeated behind the caller's back, and the caller hears of one failure
        # once. The failed job lands in the queue, whose alarm tells the platform team.
        jobs.configure_async_invoke(
            retry_attempts=0,
            max_event_age=Duration.minutes(10),
            on_failure=destinations.SqsDestination(self.job_failures),
        )
        alarm_on_any(
            self,
            "GpuJobFailuresAlarm",
            description="/gpu jobs failed (their events are in the on-failure queue; the caller was told)",
            metric=self.job_failures.metric_number_of_messages_sent(period=Duration.minutes(5)),
            action=cw_actions.SnsAction(notifications),
        )
        signing_secret.grant_read(jobs)
        slack_secret.grant_read(jobs)
        self.seen_signatures.grant(jobs, "dynamodb:PutItem")
        jobs.add_to_role_policy(iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"]))
        jobs.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ec2:StartInstances", "ec2:StopInstances", "ec2:ModifyInstanceAttribute"],
                resources=[instances_arn],
                conditions=managed,
            )
        )
        jobs.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateTags"],
                resources=[instances_arn],
                conditions={**managed, "ForAllValues:StringEquals": {"aws:TagKeys": ["keep-until"]}},
            )
        )

        self.bot = PythonLambda(
            self,
            "GpuBot",
            name="chatops",
            function_name=f"{cfg.project}-gpu-bot",
            description="Slack /gpu command: verifies and answers within 3 s, hands the work to the jobs function",
            environment={**common_env, "MLBASE_JOBS_FUNCTION": jobs.function_arn},
            timeout=Duration.seconds(10),
            reserved_concurrency=10,
            no_dead_letter_reason=(
                "Invoked synchronously by API Gateway for Slack's slash command; Slack shows a failure to the user."
            ),
        )
        bot = self.bot.function
        signing_secret.grant_read(bot)
        self.seen_signatures.grant(bot, "dynamodb:PutItem")
        # Only the unqualified function: the bot never names a version or alias.
        jobs.grant_invoke_latest_version(bot)

        self.bot_api = apigw.HttpApi(self, "BotApi", description="Slack slash command endpoint for /gpu")
        self.bot_api.add_routes(
            path="/slack/commands",
            methods=[apigw.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("BotIntegration", bot),
        )
        access_logs = logs.LogGroup(
            self,
            "BotApiAccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            encryption_key=logs_key(self, "BotApiLogsKey", description="Encrypts the /gpu API's access logs"),
            removal_policy=RemovalPolicy.DESTROY,
        )
        stage = self.bot_api.default_stage
        assert stage is not None
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        # The default stage's L2 takes neither setting; the CloudFormation properties say it plainly.
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn, format=json.dumps(BOT_ACCESS_LOG_FORMAT)
        )
        cfn_stage.default_route_settings = apigw.CfnStage.RouteSettingsProperty(
            throttling_rate_limit=BOT_RATE_LIMIT, throttling_burst_limit=BOT_BURST_LIMIT
        )
        acknowledge(
            self.bot_api,
            (
                "AwsSolutions-APIG4",
                "Slack cannot sign with IAM or JWT; the handler verifies Slack's HMAC signature before anything else.",
            ),
        )
