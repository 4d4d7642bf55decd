"""Secrets through Powertools Parameters against moto: cached within the maximum age, refreshed after it."""

from __future__ import annotations

import time

import pytest

from lambdas.common import secrets
from tests.conftest import client


def test_a_warm_container_reads_a_secret_once_within_the_maximum_age(aws: str) -> None:
    sm = client("secretsmanager", aws)
    arn = sm.create_secret(Name="mlbase/slack-signing", SecretString="first")["ARN"]
    assert secrets.secret_string(arn) == "first"
    sm.put_secret_value(SecretId=arn, SecretString="second")
    assert secrets.secret_string(arn) == "first"  # within the maximum age: no call per request


def test_a_rotated_secret_is_read_again_once_the_maximum_age_has_passed(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "SECRET_MAX_AGE", 0)  # every cached value is already old
    sm = client("secretsmanager", aws)
    arn = sm.create_secret(Name="mlbase/slack", SecretString="first")["ARN"]
    assert secrets.secret_string(arn) == "first"
    sm.put_secret_value(SecretId=arn, SecretString="rotated")
    time.sleep(0.01)
    assert secrets.secret_string(arn) == "rotated"


def test_a_missing_secret_is_an_error_naming_it_and_what_to_do(aws: str) -> None:
    with pytest.raises(secrets.SecretError, match=r"cannot read secret mlbase/nope .*create it by hand"):
        secrets.secret_string("mlbase/nope")
