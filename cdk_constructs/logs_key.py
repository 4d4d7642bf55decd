"""Customer-managed KMS keys that CloudWatch Logs may use to encrypt log groups."""

from __future__ import annotations

import jsii
from aws_cdk import IAspect, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

STACK_LOGS_KEY_ID = "LogsKey"


def logs_key(scope: Construct, id_: str, *, description: str) -> kms.Key:
    """A rotating key, kept when its stack is deleted, that the regional CloudWatch Logs service may use.

    As AWS documents it (AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html): the regional service principal,
    bound by the encryption context that CloudWatch Logs sends (the log group's ARN) to this account's log groups.
    """
    stack = Stack.of(scope)
    key = kms.Key(scope, id_, description=description, enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogsEncrypt",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={
                "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{stack.region}:{stack.account}:*"}
            },
        )
    )
    return key


def stack_logs_key(scope: Construct) -> kms.Key:
    """The stack's one key for its log groups: the project's functions, API access logs, aws-cdk-lib's functions."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(STACK_LOGS_KEY_ID)
    if isinstance(existing, kms.Key):
        return existing
    return logs_key(
        stack,
        STACK_LOGS_KEY_ID,
        description="Encrypts this stack's log groups: Lambda functions (its own and aws-cdk-lib's), API access logs",
    )


@jsii.implements(IAspect)
class EncryptedFunctionLogs:
    """Encrypts, with the stack's logs key, every log group that aws-cdk-lib creates for a function by itself.

    With `@aws-cdk/aws-lambda:useCdkManagedLogGroup` a function given no log group gets `/aws/lambda/<name>` as its
    own child, unencrypted: the library's singletons are made that way (the AwsCustomResource provider, shared by all
    AwsCustomResources of a stack). Keying the group they already have keeps its logical ID and needs no change where
    they are used. The project's functions (PythonLambda) bring their own encrypted group.
    """

    def visit(self, node: IConstruct) -> None:
        if not (isinstance(node, logs.LogGroup) and isinstance(node.node.scope, lambda_.Function)):
            return
        cfn = node.node.default_child
        if isinstance(cfn, logs.CfnLogGroup) and cfn.kms_key_id is None:
            cfn.kms_key_id = stack_logs_key(node).key_arn
