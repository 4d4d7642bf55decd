"""A customer-managed KMS key that CloudWatch Logs may use to encrypt log groups."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


def logs_key(scope: Construct, id_: str, *, description: str) -> kms.Key:
    """A rotating key, kept when its stack is deleted, that the regional CloudWatch Logs service may use."""
    key = kms.Key(scope, id_, description=description, enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
    key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{Stack.of(scope).region}.amazonaws.com"))
    return key
