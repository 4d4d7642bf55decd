"""Helpers shared by the Lambda tests: a fake Lambda context and a clean slate for cached clients and secrets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lambdas.common import aws, slack


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
    slack.load_target.cache_clear()
    aws._cached_client.cache_clear()
    yield
    slack.load_target.cache_clear()
