"""Secrets of the platform's Lambdas, read through Powertools Parameters and cached for `SECRET_MAX_AGE`.

A value cached for a container's whole life would keep a rotated Slack token or signing secret stale until the
container happens to be replaced; with a maximum age, warm containers pick the new value up within minutes, and a
busy function still makes one Secrets Manager call per five minutes, not one per request.
"""

from __future__ import annotations

import os
from functools import lru_cache

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from lambdas.common.aws import client, endpoint_url

SECRET_MAX_AGE = 300  # seconds


class SecretError(Exception):
    """A secret the function needs cannot be read; the message names it and what to do."""


@lru_cache(maxsize=4)
def _provider(endpoint: str | None, region: str | None) -> SecretsProvider:
    # One provider (and cache) per endpoint: the clients of lambdas.common.aws honour the endpoint override.
    return SecretsProvider(boto3_client=client("secretsmanager"))


def secret_string(secret_arn: str) -> str:
    """The secret's string value, fetched at most once per `SECRET_MAX_AGE` seconds per container."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    try:
        value = _provider(endpoint_url(), region).get(secret_arn, max_age=SECRET_MAX_AGE)
    except GetParameterError as err:
        raise SecretError(
            f"cannot read secret {secret_arn} ({err}): create it by hand as the README's deploy steps say, or check"
            " that this function's role may read it"
        ) from err
    if not isinstance(value, str):
        raise ValueError(f"secret {secret_arn} holds no string value")
    return value


def clear() -> None:
    """Forget every cached value (tests that recreate their secrets in a fresh AWS double)."""
    _provider.cache_clear()
