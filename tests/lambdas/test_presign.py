"""Upload API against moto server: a real multipart POST with the returned form, every policy condition decoded,
and one test per kind of bad input asserting the exact error."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from lambdas.presign import handler as presign
from lambdas.presign.logic import Settings
from tests.conftest import client
from tests.lambdas.conftest import FakeContext, http_event

BUCKET = "mlbase-uploads-test"
USER = "0b7f3f52-1111-4c3e-9f0e-5d2a3c4b5a69"
BACKEND_ROLE_ID = "AROAEXAMPLE"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2048 + b"\xff\xd9"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Default configuration: JWT auth, 20 MiB, 5 minutes. Tests adjust variables before the first invocation."""
    monkeypatch.setenv("MLBASE_UPLOAD_BUCKET", BUCKET)
    monkeypatch.setenv("MLBASE_AUTH_MODE", "jwt")
    # The unique ID of the role that signs `http_event(iam=True)` requests (userId "AROAEXAMPLE:backend").
    monkeypatch.setenv("MLBASE_BACKEND_ROLE_ID", BACKEND_ROLE_ID)
    monkeypatch.delenv("MLBASE_MAX_UPLOAD_BYTES", raising=False)
    monkeypatch.delenv("MLBASE_URL_EXPIRY_SECONDS", raising=False)
    presign.settings.cache_clear()
    yield monkeypatch
    presign.settings.cache_clear()


@pytest.fixture
def bucket(aws: str, env: pytest.MonkeyPatch) -> str:
    client("s3", aws).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    return aws


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = presign.handler(event, FakeContext())
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["Cache-Control"] == "no-store"
    return response["statusCode"], json.loads(response["body"])


def policy_of(fields: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return decoded


def test_jwt_user_gets_a_post_that_uploads_to_moto(bucket: str) -> None:
    before = datetime.now(UTC)
    status, body = call(http_event(jwt_sub=USER, body=json.dumps({"content_type": "image/jpeg"})))

    assert status == 200
    upload_id = body["upload_id"]
    assert body["key"] == f"uploads/{USER}/{upload_id}.jpg"
    assert body["max_bytes"] == 20 * 1024 * 1024
    assert body["url"] == f"{bucket}/{BUCKET}"
    expires_at = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=299) <= expires_at <= datetime.now(UTC) + timedelta(seconds=300)

    upload = requests.post(
        body["url"], data=body["fields"], files={"file": ("photo.jpg", JPEG, "image/jpeg")}, timeout=10
    )
    assert upload.status_code in (200, 204)
    head = client("s3", bucket).head_object(Bucket=BUCKET, Key=body["key"])
    assert head["ContentType"] == "image/jpeg"
    assert head["ContentLength"] == len(JPEG)


def test_policy_pins_bucket_key_type_size_and_expiry(bucket: str, env: pytest.MonkeyPatch) -> None:
    env.setenv("MLBASE_URL_EXPIRY_SECONDS", "900")
    env.setenv("MLBASE_MAX_UPLOAD_BYTES", "1000000")
    before = datetime.now(UTC).replace(microsecond=0)
    status, body = call(http_event(jwt_sub=USER, body=json.dumps({"content_type": "image/png"})))
    assert status == 200

    policy = policy_of(body["fields"])
    expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=900) <= expiration <= datetime.now(UTC) + timedelta(seconds=900)
    conditions = policy["conditions"]
    assert {"bucket": BUCKET} in conditions
    assert {"key": body["key"]} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 1, 1000000] in conditions
    assert body["key"].endswith(".png")
    # The signature fields boto3 adds are pinned too, so none of them can be swapped.
    signed = {next(iter(c)) for c in conditions if isinstance(c, dict)}
    assert {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-security-token"} <= signed
    # Nothing else loosens the policy: no starts-with conditions.
    assert [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"] == []
    assert body["fields"]["Content-Type"] == "image/png"
    assert body["fields"]["key"] == body["key"]


def test_declared_length_tightens_the_size_range(bucket: str) -> None:
    status, body = call(
        http_event(jwt_sub=USER, body=json.dumps({"content_type": "image/webp", "content_length": 4321}))
    )
    assert status == 200
    assert ["content-length-range", 1, 4321] in policy_of(body["fields"])["conditions"]
    assert body["max_bytes"] == 4321


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("image/jpeg", "jpg"),
        ("image/png", "png"),
        ("image/webp", "webp"),
        ("image/heic", "heic"),
        ("IMAGE/JPEG", "jpg"),
    ],
)
def test_each_accepted_type_gets_its_extension(bucket: str, content_type: str, extension: str) -> None:
    status, body = call(http_event(jwt_sub=USER, body=json.dumps({"content_type": content_type})))
    assert status == 200
    assert body["key"].endswith(f".{extension}")
    assert {"Content-Type": content_type.lower()} in policy_of(body["fields"])["conditions"]


def test_every_request_gets_a_fresh_upload_id(bucket: str) -> None:
    ids = {call(http_event(jwt_sub=USER, body='{"content_type": "image/png"}'))[1]["upload_id"] for _ in range(3)}
    assert len(ids) == 3


def test_iam_backend_names_the_user_in_a_header(bucket: str, env: pytest.MonkeyPatch) -> None:
    env.setenv("MLBASE_AUTH_MODE", "iam")
    event = http_event(iam=True, headers={"x-mlbase-user-id": "user-42"}, body='{"content_type": "image/heic"}')
    status, body = call(event)
    assert status == 200
    assert body["key"] == f"uploads/user-42/{body['upload_id']}.heic"


def test_jwt_mode_ignores_the_user_header(bucket: str) -> None:
    event = http_event(jwt_sub=USER, headers={"x-mlbase-user-id": "someone-else"}, body='{"content_type": "image/png"}')
    status, body = call(event)
    assert status == 200
    assert body["key"].startswith(f"uploads/{USER}/")


def test_base64_encoded_body_is_decoded(bucket: str) -> None:
    status, body = call(http_event(jwt_sub=USER, body='{"content_type": "image/png"}', base64_body=True))
    assert status == 200
    assert body["key"].endswith(".png")


def test_aws_url_is_regional_and_sigv4(env: pytest.MonkeyPatch) -> None:
    """Without an endpoint override (as in AWS) the form targets the regional virtual-hosted endpoint; signing a
    POST policy is local, so nothing leaves the machine."""
    for name in ("MLBASE_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        env.delenv(name, raising=False)
    env.setenv("AWS_REGION", "ap-northeast-1")
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_SESSION_TOKEN", "testing")
    status, body = call(http_event(jwt_sub=USER, body='{"content_type": "image/png"}'))
    assert status == 200
    assert body["url"] == f"https://{BUCKET}.s3.ap-northeast-1.amazonaws.com/"
    assert body["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert body["fields"]["x-amz-credential"].endswith("/ap-northeast-1/s3/aws4_request")


# --- bad input: one test per kind, each asserting the exact answer -------------------------------------------


def assert_error(event: dict[str, Any], code: str, message: str) -> None:
    status, body = call(event)
    assert (status, body) == (400, {"error": code, "message": message})


def test_malformed_json(bucket: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body="{content_type: image/jpeg}"),
        "malformed_json",
        "the request body is not valid JSON: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    )


def test_empty_body(bucket: str) -> None:
    assert_error(http_event(jwt_sub=USER), "malformed_json", "the request body is empty; send a JSON object")


def test_body_not_an_object(bucket: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body='["image/jpeg"]'),
        "malformed_json",
        'the body must be a JSON object like {"content_type": "image/jpeg"}',
    )


def test_missing_content_type(bucket: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body='{"content_length": 10}'),
        "missing_content_type",
        "content_type is required: one of image/heic, image/jpeg, image/png, image/webp",
    )


def test_unknown_content_type(bucket: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body='{"content_type": "image/gif"}'),
        "unsupported_content_type",
        "content_type 'image/gif' is not accepted: use one of image/heic, image/jpeg, image/png, image/webp",
    )


def test_content_type_not_a_string(bucket: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body='{"content_type": 7}'),
        "unsupported_content_type",
        "content_type 7 is not accepted: use one of image/heic, image/jpeg, image/png, image/webp",
    )


@pytest.mark.parametrize("length", ["0", "-5", '"12"', "true", "1.5"])
def test_invalid_content_length(bucket: str, length: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body=f'{{"content_type": "image/png", "content_length": {length}}}'),
        "invalid_content_length",
        "content_length must be a positive integer (bytes)",
    )


def test_oversize_declared_length(bucket: str) -> None:
    assert_error(
        http_event(jwt_sub=USER, body='{"content_type": "image/png", "content_length": 20971521}'),
        "too_large",
        "content_length 20971521 exceeds the limit of 20971520 bytes",
    )


def test_oversize_against_configured_limit(bucket: str, env: pytest.MonkeyPatch) -> None:
    env.setenv("MLBASE_MAX_UPLOAD_BYTES", "1024")
    assert_error(
        http_event(jwt_sub=USER, body='{"content_type": "image/png", "content_length": 1025}'),
        "too_large",
        "content_length 1025 exceeds the limit of 1024 bytes",
    )


def test_jwt_without_sub_claim(bucket: str) -> None:
    event = http_event(jwt_sub="", body='{"content_type": "image/png"}')
    assert_error(event, "missing_user", "no user id: the JWT must carry a 'sub' claim")


def test_no_authorizer_in_jwt_mode(bucket: str) -> None:
    assert_error(
        http_event(body='{"content_type": "image/png"}'), "missing_user", "no user id: the JWT must carry a 'sub' claim"
    )


def test_iam_without_user_header(bucket: str, env: pytest.MonkeyPatch) -> None:
    env.setenv("MLBASE_AUTH_MODE", "iam")
    assert_error(
        http_event(iam=True, body='{"content_type": "image/png"}'),
        "missing_user",
        "no user id: send the end user's id in the x-mlbase-user-id header",
    )


def test_user_header_without_iam_authorization_is_not_trusted(bucket: str, env: pytest.MonkeyPatch) -> None:
    env.setenv("MLBASE_AUTH_MODE", "iam")
    assert_error(
        http_event(headers={"x-mlbase-user-id": "user-42"}, body='{"content_type": "image/png"}'),
        "missing_user",
        "call this API with IAM (SigV4) authorization",
    )


# Each row: the IAM identity API Gateway reports for a SigV4-signed call, and why it must not name a user.
OTHER_PRINCIPALS = [
    (
        {"userId": "AIDAEXAMPLEUSER", "userArn": "arn:aws:iam::123456789012:user/alice"},
        "an IAM user of the account, allowed execute-api:Invoke by a broad policy",
    ),
    (
        {"userId": "AROAOTHERROLE:ci", "userArn": "arn:aws:sts::123456789012:assumed-role/ci-deploy/ci"},
        "another role of the account",
    ),
    (
        {"userId": "AROANEWROLEID:backend", "userArn": "arn:aws:sts::123456789012:assumed-role/app-backend/backend"},
        "a role re-created under the backend role's name: same ARN, new unique ID",
    ),
    (
        {"userId": "AROAEXAMPLEX:backend", "userArn": "arn:aws:sts::123456789012:assumed-role/other/backend"},
        "a role ID that merely starts with the backend role's",
    ),
    ({"userId": None, "userArn": None}, "no identity reported"),
]


@pytest.mark.parametrize(("identity", "reason"), OTHER_PRINCIPALS, ids=[r for _, r in OTHER_PRINCIPALS])
def test_only_the_backend_role_may_name_a_user(
    bucket: str, env: pytest.MonkeyPatch, identity: dict[str, str | None], reason: str
) -> None:
    env.setenv("MLBASE_AUTH_MODE", "iam")
    event = http_event(iam=True, headers={"x-mlbase-user-id": "user-42"}, body='{"content_type": "image/png"}')
    event["requestContext"]["authorizer"]["iam"].update(identity, callerId=identity["userId"])
    status, body = call(event)
    assert (status, body) == (
        403,
        {"error": "forbidden_caller", "message": "only the app backend role may call this API"},
    ), reason


@pytest.mark.parametrize("user", ["../other-user", "a/b", "..", "x" * 129])
def test_user_id_that_would_leave_its_prefix(bucket: str, env: pytest.MonkeyPatch, user: str) -> None:
    env.setenv("MLBASE_AUTH_MODE", "iam")
    assert_error(
        http_event(iam=True, headers={"x-mlbase-user-id": user}, body='{"content_type": "image/png"}'),
        "invalid_user",
        "the user id must be 1-128 characters of A-Z a-z 0-9 @ | : + = _ . -",
    )


# --- configuration, validated at cold start --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MLBASE_URL_EXPIRY_SECONDS", "901", "MLBASE_URL_EXPIRY_SECONDS must be an integer in 1..900, got '901'"),
        ("MLBASE_URL_EXPIRY_SECONDS", "5m", "MLBASE_URL_EXPIRY_SECONDS must be an integer in 1..900, got '5m'"),
        ("MLBASE_MAX_UPLOAD_BYTES", "0", "MLBASE_MAX_UPLOAD_BYTES must be an integer in 1..5368709120, got '0'"),
        ("MLBASE_AUTH_MODE", "cognito", "MLBASE_AUTH_MODE must be 'iam' or 'jwt', got 'cognito'"),
        ("MLBASE_UPLOAD_BUCKET", "", "MLBASE_UPLOAD_BUCKET must name the upload bucket"),
    ],
)
def test_bad_configuration_is_refused(variable: str, value: str, message: str) -> None:
    env = {"MLBASE_UPLOAD_BUCKET": BUCKET, "MLBASE_AUTH_MODE": "jwt", variable: value}
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_configuration_defaults() -> None:
    settings = Settings.from_env(
        {"MLBASE_UPLOAD_BUCKET": BUCKET, "MLBASE_AUTH_MODE": "IAM", "MLBASE_BACKEND_ROLE_ID": BACKEND_ROLE_ID}
    )
    assert (settings.max_upload_bytes, settings.expiry_seconds, settings.auth_mode) == (20971520, 300, "iam")
    assert settings.backend_role_id == BACKEND_ROLE_ID


@pytest.mark.parametrize("role_id", ["", "app-backend", "arn:aws:iam::123456789012:role/app-backend", "AIDAUSER"])
def test_iam_mode_needs_the_backend_role_id(role_id: str) -> None:
    env = {"MLBASE_UPLOAD_BUCKET": BUCKET, "MLBASE_AUTH_MODE": "iam", "MLBASE_BACKEND_ROLE_ID": role_id}
    message = f"MLBASE_BACKEND_ROLE_ID must be the app backend role's unique ID (AROA...), got {role_id!r}"
    with pytest.raises(ValueError, match=r"^MLBASE_BACKEND_ROLE_ID must be") as error:
        Settings.from_env(env)
    assert str(error.value) == message
