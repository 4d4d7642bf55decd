"""One account's notification path: an encrypted SNS topic, e-mail subscribers, and a Slack notifier Lambda."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.alarms import alarm_on_any
from cdk_constructs.python_lambda import PythonLambda

# AWS services that publish to the topic directly and must be able to use its key. EventBridge is not listed: the
# CDK grants it on the key when a rule targets the topic.
PUBLISHING_SERVICES = ("budgets.amazonaws.com", "cloudwatch.amazonaws.com")
# Slack calls per message inside one invocation, and the longest wait between them (lambdas/slack_notify).
SLACK_ATTEMPTS = 4
SLACK_MAX_DELAY_SECONDS = 8
# Each attempt may take the notifier's 10 s HTTP timeout; the function must outlive all of them and the waits.
NOTIFIER_TIMEOUT = Duration.seconds(SLACK_ATTEMPTS * 10 + (SLACK_ATTEMPTS - 1) * SLACK_MAX_DELAY_SECONDS + 30)


class Notifications(Construct):
    """SNS topic (`topic`) -> e-mail subscribers and the `slack_notify` Lambda (`notifier`) -> Slack.

    - The topic is encrypted with its own key (`key`), TLS-only, and its key and policy let AWS Budgets, EventBridge
      and CloudWatch alarms of this account publish.
    - The Slack credentials stay in the Secrets Manager secret `slack_secret_name` (created by hand); the function
      gets its ARN and read access, never the value.
    - Nothing is dropped silently: the notifier retries Slack itself, then Lambda retries the asynchronous
      invocation twice, then the event lands in `dead_letter_queue`, whose depth raises `dead_letter_alarm`
      (which e-mails the topic's subscribers). Messages SNS cannot hand to Lambda land in the same queue.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        emails: Sequence[str],
        slack_secret_name: str,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description="Encrypts the notifications topic",
            removal_policy=RemovalPolicy.DESTROY,
        )
        for service in PUBLISHING_SERVICES:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Allow{service.split('.')[0].capitalize()}ToPublish",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                )
            )
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowBudgetsToPublish",
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": f"arn:aws:budgets::{stack.account}:*"},
                },
            )
        )
        # A topic policy replaces SNS's default one, so every publishing service needs its own statement
        # (AmazonCloudWatch/latest/monitoring/US_SetupSNS.html, "Preventing confused deputy issues").
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{stack.region}:{stack.account}:alarm:*"},
                },
            )
        )
        for address in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(address))

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        secret = secretsmanager.Secret.from_secret_name_v2(self, "SlackSecret", slack_secret_name)
        notifier = PythonLambda(
            self,
            "SlackNotifier",
            name="slack_notify",
            description="Posts platform notifications (budgets, Config findings, alarms) to Slack",
            environment={
                "MLBASE_SLACK_SECRET_ARN": secret.secret_arn,
                "MLBASE_SLACK_MAX_ATTEMPTS": str(SLACK_ATTEMPTS),
                "MLBASE_SLACK_MAX_DELAY_SECONDS": str(SLACK_MAX_DELAY_SECONDS),
            },
            timeout=NOTIFIER_TIMEOUT,
            reserved_concurrency=2,
            calls_slack=True,
            dead_letter_queue=self.dead_letter_queue,
            unscoped_actions=["cloudtrail:LookupEvents"],
        )
        self.notifier = notifier.function
        self.notifier_role: iam.IRole = notifier.role
        self.notifier.configure_async_invoke(retry_attempts=2, max_event_age=Duration.hours(6))
        secret.grant_read(self.notifier)
        # Names who opened a non-compliant security group; LookupEvents supports no resource scoping.
        self.notifier.add_to_role_policy(iam.PolicyStatement(actions=["cloudtrail:LookupEvents"], resources=["*"]))
        self.topic.add_subscription(
            subscriptions.LambdaSubscription(self.notifier, dead_letter_queue=self.dead_letter_queue)
        )

        self.dead_letter_alarm = alarm_on_any(
            self,
            "DeadLetterAlarm",
            description="Slack notifications failed after all retries; read them from the dead-letter queue",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            action=cw_actions.SnsAction(self.topic),
        )
