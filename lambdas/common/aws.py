"""boto3 clients that can be pointed at a local AWS double (moto) through one setting."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

ENDPOINT_ENV_VARS = ("MLBASE_ENDPOINT_URL", "AWS_ENDPOINT_URL")


def endpoint_url() -> str | None:
    """The endpoint override, if any: `MLBASE_ENDPOINT_URL` first, then the SDK-standard `AWS_ENDPOINT_URL`."""
    for name in ENDPOINT_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def client(service: str) -> Any:
    """A boto3 client for `service`, honouring the endpoint override and the Lambda region.

    Clients are cached per (service, endpoint, region) because creating one costs tens of milliseconds, which
    matters on every warm invocation; the key includes the endpoint so tests that switch it get a fresh client.
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _cached_client(service, endpoint_url(), region)


# Pre-signed S3 requests must be SigV4 (boto3 still defaults pre-signed POSTs to the deprecated SigV2) and name
# the regional virtual-hosted endpoint: the global one answers buckets outside us-east-1 with a redirect, which a
# browser or phone will not follow with a POST body.
_SERVICE_CONFIG = {"s3": Config(signature_version="s3v4", s3={"addressing_style": "virtual"})}


# The SDK's standard retry mode (retry quotas, backoff with jitter, throttling errors retried) instead of the legacy
# default, for every client of every function.
_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 5})


def client_config(service: str) -> Config:
    """The botocore config of `service`'s clients: standard retries, plus what the service needs (S3's SigV4)."""
    specific = _SERVICE_CONFIG.get(service)
    return _RETRIES.merge(specific) if specific is not None else _RETRIES


@lru_cache(maxsize=32)
def _cached_client(service: str, endpoint: str | None, region: str | None) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint, region_name=region, config=client_config(service)
    )
