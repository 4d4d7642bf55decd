"""The account's Session Manager preferences, created where missing and adopted where they exist."""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.nag import acknowledge
from cdk_constructs.python_lambda import PythonLambda
from lambdas.session_preferences.logic import DOCUMENT_NAME, session_content


class SessionPreferences(Construct):
    """Session Manager preferences of this account and region (the `SSM-SessionManagerRunShell` document).

    Sessions are encrypted with `key`, streamed to `log_group` (which must be encrypted: Session Manager refuses to
    stream to a plain group when encryption is on), end after `idle_minutes` without input and after
    `max_session_minutes` in all. The document is applied by a custom resource (`lambdas/session_preferences`),
    because the console creates the same document the first time anyone opens the preferences page and a template
    that creates it by name would then fail; the resource adopts an existing one instead, and leaves it in place when
    the stack is deleted. The research boundary denies researchers any change to it.
    Instances whose sessions are logged need `grant_instance`.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        key: kms.IKey,
        log_group: logs.ILogGroup,
        idle_minutes: int = 20,
        max_session_minutes: int = 240,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.key, self.log_group = key, log_group
        applier = PythonLambda(
            self,
            "Applier",
            name="session_preferences",
            description="Creates or adopts the account's Session Manager preferences document (deploy time only)",
            timeout=Duration.seconds(60),
            reserved_concurrency=1,
            no_dead_letter_reason=(
                "CloudFormation invokes it as a custom resource and waits for its answer: a failure fails the deploy,"
                " which reports it; a queued event would have no reader."
            ),
        )
        applier.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "ssm:CreateDocument",
                    "ssm:DescribeDocument",
                    "ssm:UpdateDocument",
                    "ssm:UpdateDocumentDefaultVersion",
                ],
                resources=[stack.format_arn(service="ssm", resource="document", resource_name=DOCUMENT_NAME)],
            )
        )
        content = session_content(
            kms_key_id=key.key_id,
            log_group_name=log_group.log_group_name,
            idle_minutes=idle_minutes,
            max_session_minutes=max_session_minutes,
            description="mlbase Session Manager preferences: encrypted, logged sessions",
        )
        self.document = CustomResource(
            self,
            "Document",
            service_token=applier.function.function_arn,
            resource_type="Custom::SessionPreferences",
            properties={"Name": DOCUMENT_NAME, "Content": stack.to_json_string(content)},
        )

    def grant_instance(self, role: iam.Role) -> None:
        """What an instance's SSM agent needs to encrypt sessions and stream them to the log group (one policy on
        the role, beside its AmazonSSMManagedInstanceCore)."""
        policy = iam.Policy(
            role,
            "SessionLogging",
            statements=[
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.key.key_arn]),
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[self.log_group.log_group_arn],
                ),
                iam.PolicyStatement(actions=["logs:DescribeLogGroups"], resources=["*"]),
            ],
        )
        policy.attach_to_role(role)
        acknowledge(
            policy,
            (
                "AwsSolutions-IAM5[Resource::*]",
                "The agent checks the session log group's encryption with logs:DescribeLogGroups, which takes no"
                " resource.",
            ),
            ("NIST.800.53.R5-IAMNoInlinePolicy", "Session logging for this one instance role, next to the role."),
        )
