"""A customer-managed KMS key that CloudWatch Logs may use to encrypt log groups."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


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
