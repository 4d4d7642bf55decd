"""Workbench stack (research account): researchers' GPU workstations, the idle monitor and the /gpu Slack bot."""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, CfnOutput, Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.nag import acknowledge
from cdk_constructs.python_lambda import PythonLambda
from cdk_constructs.workstation import MANAGED_TAG, Workstation
from stacks.base import ZonedStack
from stacks.config import Platform
from stacks.gpu_versions import load_ami_versions


class WorkbenchStack(ZonedStack):
    """A GPU workstation per researcher in the roster, the idle monitor and the /gpu Slack bot."""

    def __init__(
        self, scope: Construct, id_: str, *, platform: Platform, vpc: ec2.IVpc, notifications: sns.ITopic
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
        acknowledge(failures, ("AwsSolutions-SQS3", "This queue is the dead-letter queue of the idle monitor."))
        self.idle_monitor = PythonLambda(
            self,
            "IdleMonitor",
            name="idle_monitor",
            description="Warns researchers in Slack about idle GPU instances; optionally stops them",
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
        failure_alarm = cloudwatch.Alarm(
            self,
            "IdleMonitorFailuresAlarm",
            alarm_description="Idle monitor runs failed after retries (messages in its dead-letter queue)",
            metric=failures.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        failure_alarm.add_alarm_action(cw_actions.SnsAction(notifications))

        bot_name = f"{cfg.project}-gpu-bot"
        self.bot = PythonLambda(
            self,
            "GpuBot",
            name="chatops",
            function_name=bot_name,
            description="Slack /gpu command: list, status, start, stop, keep researcher workstations",
            environment={
                "MLBASE_SIGNING_SECRET_ARN": signing_secret.secret_arn,
                "MLBASE_SLACK_SECRET_ARN": slack_secret.secret_arn,
                "MLBASE_ROSTER": roster,
                "MLBASE_ADMIN_SLACK_IDS": ",".join(wb.admins),
                "MLBASE_FALLBACK_INSTANCE_TYPES": json.dumps(
                    {k: list(v) for k, v in wb.fallback_instance_types.items()}, sort_keys=True, separators=(",", ":")
                ),
            },
            timeout=Duration.seconds(60),
            reserved_concurrency=10,
        )
        bot = self.bot.function
        signing_secret.grant_read(bot)
        slack_secret.grant_read(bot)
        # The bot hands slow EC2 work to an asynchronous invocation of itself (named, so no circular reference).
        bot.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[
                    self.format_arn(
                        service="lambda",
                        resource="function",
                        resource_name=bot_name,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        bot.add_to_role_policy(iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"]))
        bot.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ec2:StartInstances", "ec2:StopInstances", "ec2:ModifyInstanceAttribute"],
                resources=[instances_arn],
                conditions=managed,
            )
        )
        bot.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateTags"],
                resources=[instances_arn],
                conditions={**managed, "ForAllValues:StringEquals": {"aws:TagKeys": ["keep-until"]}},
            )
        )
        self.bot_api = apigw.HttpApi(self, "BotApi", description="Slack slash command endpoint for /gpu")
        self.bot_api.add_routes(
            path="/slack/commands",
            methods=[apigw.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("BotIntegration", bot),
        )
        acknowledge(
            self.bot_api,
            (
                "AwsSolutions-APIG4",
                "Slack cannot sign with IAM or JWT; the handler verifies Slack's HMAC signature before anything else.",
            ),
            (
                "AwsSolutions-APIG1",
                "The bot logs every command with the Slack user and the result in its own encrypted log group.",
            ),
        )
        for fn in (self.idle_monitor, self.bot):
            acknowledge(
                fn.role,
                (
                    "AwsSolutions-IAM5[Resource::*]",
                    "ec2:DescribeInstances and cloudwatch:GetMetricData support no resource scoping.",
                ),
                (
                    f"AwsSolutions-IAM5[Resource::arn:aws:ec2:{self.region}:{self.account}:instance/*]",
                    "Instance IDs change when the roster changes; access is conditioned on the mlbase:managed tag.",
                ),
                (
                    f"AwsSolutions-IAM5[Resource::arn:aws:secretsmanager:{self.region}:{self.account}:secret:"
                    f"{cfg.slack.secret_name}-??????]",
                    "Secrets referenced by name carry a random six-character suffix in their ARN.",
                ),
                (
                    f"AwsSolutions-IAM5[Resource::arn:aws:secretsmanager:{self.region}:{self.account}:secret:"
                    f"{cfg.slack.signing_secret_name}-??????]",
                    "Secrets referenced by name carry a random six-character suffix in their ARN.",
                ),
            )
        CfnOutput(self, "SlackCommandUrl", value=f"{self.bot_api.api_endpoint}/slack/commands",
                  description="Request URL for the /gpu slash command in the Slack app")  # fmt: skip
