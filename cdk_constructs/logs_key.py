"""Customer-managed KMS keys that CloudWatch Logs may use to encrypt log groups."""

from __future__ import annotations

from typing import TypeGuard

import jsii
from aws_cdk import CfnResource, IAspect, RemovalPolicy, Stack
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


def is_plain_function(node: IConstruct) -> TypeGuard[CfnResource]:
    """Whether `node` is a function aws-cdk-lib writes as a plain `AWS::Lambda::Function` CfnResource rather than
    through `lambda.Function`: its custom-resource handlers (bucket notifications, the default security group)."""
    return (
        isinstance(node, CfnResource)
        and not isinstance(node, lambda_.CfnFunction)
        and node.cfn_resource_type == "AWS::Lambda::Function"
    )


# How long the logs of aws-cdk-lib's deploy-time functions are kept (the project's functions choose their own).
LIBRARY_FUNCTION_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS


@jsii.implements(IAspect)
class EncryptedFunctionLogs:
    """Gives every function aws-cdk-lib creates by itself an encrypted log group with a retention.

    - With `@aws-cdk/aws-lambda:useCdkManagedLogGroup` a `lambda.Function` given no log group gets `/aws/lambda/<name>`
      as its own child, unencrypted: the AwsCustomResource provider is made that way. Its group gets the stack's key,
      which keeps its logical ID and needs no change where it is used.
    - The library's custom-resource handlers written as a plain `AWS::Lambda::Function` CfnResource (bucket
      notifications, the default security group's restriction) have no group in the template: Lambda would create
      one at their first run, unencrypted and kept forever. They get one here, and their `LoggingConfig` points to it.
    The project's functions (PythonLambda) bring their own encrypted group.
    """

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, logs.LogGroup) and isinstance(node.node.scope, lambda_.Function):
            cfn = node.node.default_child
            if isinstance(cfn, logs.CfnLogGroup) and cfn.kms_key_id is None:
                cfn.kms_key_id = stack_logs_key(node).key_arn
        elif (
            is_plain_function(node)
            and isinstance(handler := node.node.scope, Construct)
            and handler.node.try_find_child("LogGroup") is None
        ):
            group = logs.LogGroup(
                handler,
                "LogGroup",
                retention=LIBRARY_FUNCTION_LOG_RETENTION,
                encryption_key=stack_logs_key(node),
                removal_policy=RemovalPolicy.DESTROY,
            )
            node.add_property_override("LoggingConfig.LogGroup", group.log_group_name)
            node.node.add_dependency(group)
