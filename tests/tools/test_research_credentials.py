"""The research credential helper against moto's STS and IAM on loopback."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REGION
from tools import research_credentials as rc

ROLE = "arn:aws:iam::123456789012:role/mlbase-ResearchDeveloper"


def user_session(endpoint: str, name: str) -> Any:
    """A session holding an access key of the IAM user `name`, created in moto (a production user)."""
    iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint)
    iam.create_user(UserName=name, Path="/mlbase/people/")
    key = iam.create_access_key(UserName=name)["AccessKey"]
    session = boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )
    return rc._EndpointSession(session, endpoint)


def test_assumes_the_role_named_after_the_caller(aws: str, tmp_path: Path) -> None:
    codes: list[str] = []
    answer = rc.credentials(
        user_session(aws, "taro"),
        role_arn=ROLE,
        mfa_serial="arn:aws:iam::123456789012:mfa/taro",
        duration_seconds=3600,
        read_code=lambda prompt: codes.append(prompt) or "123456\n",
        cache_dir=tmp_path,
        now=dt.datetime.now(dt.UTC),
    )
    assert answer["Version"] == 1
    assert {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} <= answer.keys()
    assert codes == ["MFA code for arn:aws:iam::123456789012:mfa/taro: "]
    # The session moto issued carries the user's name as the session name.
    assumed = boto3.client(
        "sts", region_name=REGION, endpoint_url=aws, aws_access_key_id=answer["AccessKeyId"],
        aws_secret_access_key=answer["SecretAccessKey"], aws_session_token=answer["SessionToken"],
    ).get_caller_identity()  # fmt: skip
    assert assumed["Arn"].endswith(":assumed-role/mlbase-ResearchDeveloper/taro")


def test_the_request_names_the_source_identity(tmp_path: Path) -> None:
    """What reaches STS: the source identity and session name are the user's own name, never typed by them."""
    sent: dict[str, Any] = {}

    class Sts:
        def get_caller_identity(self) -> dict[str, str]:
            return {"Arn": "arn:aws:iam::111111111111:user/mlbase/people/yuki"}

        def assume_role(self, **request: Any) -> dict[str, Any]:
            sent.update(request)
            expires = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
            return {"Credentials": {"AccessKeyId": "A", "SecretAccessKey": "S", "SessionToken": "T",
                                    "Expiration": expires}}  # fmt: skip

    class Session:
        def client(self, service: str) -> Sts:
            return Sts()

    answer = rc.credentials(Session(), role_arn=ROLE, mfa_serial=None, duration_seconds=900,
                            read_code=lambda _: "", cache_dir=tmp_path,
                            now=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC))  # fmt: skip
    assert sent == {"RoleArn": ROLE, "RoleSessionName": "yuki", "SourceIdentity": "yuki", "DurationSeconds": 900}
    assert answer["Expiration"] == "2026-12-01T12:00:00+00:00"
    # Cached until five minutes before expiry: a second call asks STS nothing.
    sent.clear()
    again = rc.credentials(Session(), role_arn=ROLE, mfa_serial=None, duration_seconds=900,
                           read_code=lambda _: "", cache_dir=tmp_path,
                           now=dt.datetime(2026, 12, 1, 11, 50, tzinfo=dt.UTC))  # fmt: skip
    assert again == answer
    assert sent == {}
    (cache_file,) = tmp_path.iterdir()
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(cache_file.read_text())["AccessKeyId"] == "A"


def test_refuses_credentials_that_are_not_a_users() -> None:
    with pytest.raises(rc.UsageError, match="is not an IAM user"):
        rc.user_name("arn:aws:sts::111111111111:assumed-role/Admin/x")
