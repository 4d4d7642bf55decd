"""Helpers shared by the Lambda tests: a fake Lambda context and a clean slate for cached clients and secrets."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lambdas.common import aws, secrets


@dataclass(frozen=True)
class FakeContext:
    """The attributes Powertools' inject_lambda_context reads from a real Lambda context."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:ap-northeast-1:123456789012:function:test-function"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Cached secrets would leak between tests that each create their own secret in a reset moto."""
    secrets.clear()
    aws._cached_client.cache_clear()
    yield
    secrets.clear()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of slack_sdk's retry handlers, recorded instead of slept and without their random jitter, so that
    retry tests take no time and can assert each wait exactly."""
    recorded: list[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)
    monkeypatch.setattr(random, "random", lambda: 0.0)
    return recorded


def http_event(
    *,
    method: str = "POST",
    path: str = "/uploads",
    body: str | None = None,
    jwt_sub: str | None = None,
    iam: bool = False,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, with a JWT or IAM authorizer block as AWS sends them."""
    authorizer: dict[str, Any] = {}
    if jwt_sub is not None:
        authorizer["jwt"] = {"claims": {"sub": jwt_sub, "iss": "https://issuer.example"}, "scopes": None}
    if iam:
        authorizer["iam"] = {
            "accessKey": "ASIAEXAMPLE",
            "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:backend",
            "principalOrgId": None,
            "userArn": "arn:aws:sts::123456789012:assumed-role/app-backend/backend",
            "userId": "AROAEXAMPLE:backend",
        }
    if base64_body and body is not None:
        body = base64.b64encode(body.encode()).decode()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api-id.execute-api.ap-northeast-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
            "requestId": "request-id",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "27/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795773600000,
        },
        "isBase64Encoded": base64_body,
    }
    if authorizer:
        event["requestContext"]["authorizer"] = authorizer
    if body is not None:
        event["body"] = body
    if path_parameters is not None:
        event["pathParameters"] = path_parameters
    return event
