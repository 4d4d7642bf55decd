"""The bucket that receives S3 server access logs (a stack's log sink)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.nag import acknowledge


def access_log_bucket(scope: Construct, id_: str, *, expiration: Duration) -> s3.Bucket:
    """A private, TLS-only, versioned SSE-S3 bucket for server access logs, expiring them after `expiration`.

    A function rather than a construct so that the bucket keeps the logical ID it has where it is used.
    """
    bucket = s3.Bucket(
        scope,
        id_,
        # Server access log delivery supports SSE-S3 only.
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="ExpireAccessLogs", expiration=expiration, noncurrent_version_expiration=Duration.days(30)
            )
        ],
    )
    acknowledge(
        bucket,
        ("NIST.800.53.R5-S3DefaultEncryptionKMS", "S3 server access log delivery only supports SSE-S3."),
        ("NIST.800.53.R5-S3BucketReplicationEnabled", "Access logs are diagnostic and expire; nothing to replicate."),
    )
    return bucket
