"""Results API against a DynamoDB table in moto server: own results only, 404 for anything else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from lambdas.common.aws import client as lambda_client
from lambdas.results import handler as results
from lambdas.results.logic import Settings, fetch_result
from tests.conftest import REGION, client
from tests.lambdas.conftest import FakeContext, http_event

TABLE = "mlbase-results-test"
ALICE = "alice-sub-0001"
BOB = "bob-sub-0002"
UPLOAD = "5f0c6a4e-2b1d-4c7e-9a3b-1d2e3f4a5b6c"
OTHER_UPLOAD = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def table(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("MLBASE_RESULTS_TABLE", TABLE)
    monkeypatch.setenv("MLBASE_AUTH_MODE", "jwt")
    # The unique ID of the role that signs `http_event(iam=True)` requests (userId "AROAEXAMPLE:backend").
    monkeypatch.setenv("MLBASE_BACKEND_ROLE_ID", "AROAEXAMPLE")
    results.settings.cache_clear()
    client("dynamodb", aws).create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "upload_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "upload_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield boto3.resource("dynamodb", region_name=REGION, endpoint_url=aws).Table(TABLE)
    results.settings.cache_clear()


def stored(user: str, upload_id: str, ext: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "upload_key": f"uploads/{user}/{upload_id}.{ext}",
        "etag": '"0123456789abcdef0123456789abcdef"',
        "label": "golden_retriever",
        "score": Decimal("0.9375"),
        "model_version": "resnet50-2026.11.1",
        "error": None,
        "timings": {"download_ms": Decimal(12), "decode_ms": Decimal("3.5"), "model_ms": Decimal(41)},
        "processed_at": "2026-11-27T10:00:05Z",
    }
    item.update(overrides)
    return item


def get(upload_id: str | None, *, user: str | None = ALICE, **event: Any) -> tuple[int, dict[str, Any]]:
    params = None if upload_id is None else {"upload_id": upload_id}
    response = results.handler(
        http_event(method="GET", path=f"/results/{upload_id}", jwt_sub=user, path_parameters=params, **event),
        FakeContext(),
    )
    assert response["headers"]["Cache-Control"] == "no-store"
    return response["statusCode"], json.loads(response["body"])


def test_owner_reads_its_result(table: Any) -> None:
    table.put_item(Item=stored(ALICE, UPLOAD, "jpg"))
    status, body = get(UPLOAD)
    assert status == 200
    assert body == {
        "status": "done",
        "upload_id": UPLOAD,
        "key": f"uploads/{ALICE}/{UPLOAD}.jpg",
        "etag": '"0123456789abcdef0123456789abcdef"',
        "label": "golden_retriever",
        "score": 0.9375,
        "model_version": "resnet50-2026.11.1",
        "error": None,
        "timings": {"download_ms": 12, "decode_ms": 3.5, "model_ms": 41},
        "processed_at": "2026-11-27T10:00:05Z",
    }


@pytest.mark.parametrize("ext", ["png", "webp", "heic"])
def test_any_known_extension_is_found(table: Any, ext: str) -> None:
    table.put_item(Item=stored(ALICE, UPLOAD, ext))
    status, body = get(UPLOAD)
    assert (status, body["key"]) == (200, f"uploads/{ALICE}/{UPLOAD}.{ext}")


def test_failed_classification_is_reported_as_failed(table: Any) -> None:
    table.put_item(Item=stored(ALICE, UPLOAD, "png", label=None, score=None, error="decode_failed"))
    status, body = get(UPLOAD)
    assert status == 200
    assert (body["status"], body["error"], body["label"]) == ("failed", "decode_failed", None)


def test_upper_case_id_is_normalized(table: Any) -> None:
    table.put_item(Item=stored(ALICE, UPLOAD, "jpg"))
    status, body = get(UPLOAD.upper())
    assert (status, body["upload_id"]) == (200, UPLOAD)


def test_attributes_beyond_the_result_are_not_returned(table: Any) -> None:
    table.put_item(Item=stored(ALICE, UPLOAD, "jpg", worker_host="ip-10-0-1-5", raw_logits=[Decimal(1)]))
    status, body = get(UPLOAD)
    assert status == 200
    assert "worker_host" not in body
    assert "raw_logits" not in body


def test_another_users_upload_is_not_found(table: Any) -> None:
    table.put_item(Item=stored(BOB, OTHER_UPLOAD, "jpg"))
    assert get(OTHER_UPLOAD, user=ALICE) == (404, {"status": "not_found"})
    # ...while Bob reads it fine, so the 404 above is the ownership check and not a broken lookup.
    assert get(OTHER_UPLOAD, user=BOB)[0] == 200


def test_lookup_only_asks_for_the_callers_own_keys(table: Any) -> None:
    sent: list[dict[str, Any]] = []
    dynamodb = lambda_client("dynamodb")

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    dynamodb.meta.events.register("provide-client-params.dynamodb.BatchGetItem", capture)
    try:
        get(OTHER_UPLOAD, user=ALICE)
    finally:
        dynamodb.meta.events.unregister("provide-client-params.dynamodb.BatchGetItem", capture)
    [request] = sent
    keys = [k["upload_key"]["S"] for k in request["RequestItems"][TABLE]["Keys"]]
    assert keys == [f"uploads/{ALICE}/{OTHER_UPLOAD}.{ext}" for ext in ("jpg", "png", "webp", "heic")]


def test_no_result_yet_is_not_found(table: Any) -> None:
    assert get(UPLOAD) == (404, {"status": "not_found"})


@pytest.mark.parametrize(
    "upload_id",
    [
        "not-a-uuid",
        "",
        f"{UPLOAD}.jpg",
        "{" + UPLOAD + "}",
        UPLOAD.replace("-", ""),
        f"../{BOB}/{OTHER_UPLOAD}",
        f"urn:uuid:{UPLOAD}",
    ],
)
def test_malformed_id_is_not_found(table: Any, upload_id: str) -> None:
    table.put_item(Item=stored(BOB, OTHER_UPLOAD, "jpg"))
    table.put_item(Item=stored(ALICE, UPLOAD, "jpg"))
    assert get(upload_id) == (404, {"status": "not_found"})


def test_missing_path_parameter_is_not_found(table: Any) -> None:
    assert get(None) == (404, {"status": "not_found"})


def test_missing_user_is_rejected(table: Any) -> None:
    table.put_item(Item=stored(ALICE, UPLOAD, "jpg"))
    assert get(UPLOAD, user=None) == (
        400,
        {"error": "missing_user", "message": "no user id: the JWT must carry a 'sub' claim"},
    )


def test_iam_mode_reads_the_user_header(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLBASE_AUTH_MODE", "iam")
    results.settings.cache_clear()
    table.put_item(Item=stored(BOB, UPLOAD, "webp"))
    status, body = get(UPLOAD, user=None, iam=True, headers={"x-mlbase-user-id": BOB})
    assert (status, body["key"]) == (200, f"uploads/{BOB}/{UPLOAD}.webp")
    # The header means nothing without IAM authorization.
    assert get(UPLOAD, user=None, headers={"x-mlbase-user-id": BOB}) == (
        400,
        {"error": "missing_user", "message": "call this API with IAM (SigV4) authorization"},
    )


@pytest.mark.parametrize(
    "identity",
    [
        {"userId": "AIDAEXAMPLEUSER", "userArn": "arn:aws:iam::123456789012:user/alice"},
        {"userId": "AROAOTHERROLE:ci", "userArn": "arn:aws:sts::123456789012:assumed-role/ci-deploy/ci"},
        {"userId": "AROANEWROLEID:backend", "userArn": "arn:aws:sts::123456789012:assumed-role/app-backend/backend"},
    ],
    ids=["iam-user", "other-role", "recreated-role"],
)
def test_iam_principals_other_than_the_backend_cannot_read_a_users_results(
    table: Any, monkeypatch: pytest.MonkeyPatch, identity: dict[str, str]
) -> None:
    monkeypatch.setenv("MLBASE_AUTH_MODE", "iam")
    results.settings.cache_clear()
    table.put_item(Item=stored(BOB, UPLOAD, "webp"))
    event = http_event(
        method="GET",
        path=f"/results/{UPLOAD}",
        iam=True,
        headers={"x-mlbase-user-id": BOB},
        path_parameters={"upload_id": UPLOAD},
    )
    event["requestContext"]["authorizer"]["iam"].update(identity, callerId=identity["userId"])
    response = results.handler(event, FakeContext())
    assert (response["statusCode"], json.loads(response["body"])) == (
        403,
        {"error": "forbidden_caller", "message": "only the app backend role may call this API"},
    )


class ThrottledDynamo:
    """BatchGetItem that leaves keys unprocessed `throttled` times (moto never throttles)."""

    def __init__(self, throttled: int, item: dict[str, Any] | None) -> None:
        self.throttled = throttled
        self.item = item
        self.calls: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        self.calls.append(RequestItems)
        if self.throttled:
            self.throttled -= 1
            return {"Responses": {TABLE: []}, "UnprocessedKeys": RequestItems}
        return {"Responses": {TABLE: [self.item] if self.item else []}, "UnprocessedKeys": {}}


def test_unprocessed_keys_are_retried() -> None:
    dynamo = ThrottledDynamo(2, {"upload_key": {"S": "uploads/a/x.png"}, "label": {"S": "cat"}})
    sleeps: list[float] = []
    item = fetch_result(dynamo, TABLE, ["uploads/a/x.jpg", "uploads/a/x.png"], sleep=sleeps.append)
    assert item == {"upload_key": "uploads/a/x.png", "label": "cat"}
    assert len(dynamo.calls) == 3
    assert sleeps == [0.05, 0.1]


def test_persistent_throttling_raises_instead_of_not_found() -> None:
    dynamo = ThrottledDynamo(10, None)
    with pytest.raises(RuntimeError, match="results lookup throttled: 2 keys unprocessed"):
        fetch_result(dynamo, TABLE, ["uploads/a/x.jpg", "uploads/a/x.png"], sleep=lambda _: None)
    assert len(dynamo.calls) == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLBASE_AUTH_MODE": "jwt"}, "MLBASE_RESULTS_TABLE must name the results table"),
        ({"MLBASE_RESULTS_TABLE": TABLE}, "MLBASE_AUTH_MODE must be 'iam' or 'jwt', got None"),
    ],
)
def test_bad_configuration_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Settings.from_env(env)
