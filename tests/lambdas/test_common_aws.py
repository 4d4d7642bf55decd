"""The shared boto3 clients of every Lambda: standard retries, S3's SigV4 virtual-hosted form, the endpoint override."""

from __future__ import annotations

import pytest

from lambdas.common import aws


@pytest.mark.parametrize("service", ["dynamodb", "ec2", "secretsmanager", "sqs", "s3"])
def test_every_client_uses_the_standard_retry_mode(aws_: str, service: str) -> None:
    retries = aws.client(service).meta.config.retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == 5


def test_s3_keeps_sigv4_and_virtual_hosted_addressing_beside_the_retries(aws_: str) -> None:
    config = aws.client("s3").meta.config
    assert config.signature_version == "s3v4"
    assert config.s3 == {"addressing_style": "virtual"}
    assert config.retries["mode"] == "standard"


def test_clients_go_to_the_endpoint_override(aws_: str) -> None:
    assert aws.client("sqs").meta.endpoint_url == aws_


@pytest.fixture
def aws_(aws: str) -> str:
    return aws
