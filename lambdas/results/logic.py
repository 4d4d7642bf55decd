"""Results API decisions: which keys a caller may read, and what of a stored result it gets back.

Results are stored under the upload's key, ``uploads/<user>/<uuid>.<ext>``. The API only knows the upload id,
not the extension, and a hash key cannot be queried by prefix, so the lookup asks for every known extension
under the *caller's own* prefix in one BatchGetItem. The caller's id is part of every key asked for, which is
the security property: another user's result can never be read, and unknown, foreign and malformed ids all
look the same (404).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from lambdas.common.httpapi import AuthMode, backend_role_id, parse_auth_mode
from lambdas.common.uploads import candidate_keys, normalize_upload_id

RESULT_ATTRIBUTES = ("upload_key", "etag", "label", "score", "model_version", "error", "timings", "processed_at")
MAX_BATCH_ATTEMPTS = 4
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class Settings:
    table: str
    auth_mode: AuthMode
    backend_role_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        table = env.get("MLBASE_RESULTS_TABLE", "").strip()
        if not table:
            raise ValueError("MLBASE_RESULTS_TABLE must name the results table")
        mode = parse_auth_mode(env.get("MLBASE_AUTH_MODE"))
        return cls(table, mode, backend_role_id(env, mode))


def keys_to_try(user_id: str, raw_upload_id: str | None) -> tuple[str, list[str]] | None:
    """(canonical upload id, the keys the caller may read for it), or None when the id is not a UUID."""
    upload_id = normalize_upload_id(raw_upload_id or "")
    return (upload_id, candidate_keys(user_id, upload_id)) if upload_id else None


def fetch_result(
    dynamodb: Any, table: str, keys: list[str], sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any] | None:
    """The stored result for the first of `keys` that exists, or None.

    Unprocessed keys (throttling) are retried a few times; if some stay unprocessed the lookup raises rather than
    answering "not found" for a result that may exist.
    """
    names = {f"#a{i}": name for i, name in enumerate(RESULT_ATTRIBUTES)}
    request: dict[str, Any] = {
        table: {
            "Keys": [{"upload_key": {"S": key}} for key in keys],
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
            "ConsistentRead": True,
        }
    }
    found: list[dict[str, Any]] = []
    for attempt in range(MAX_BATCH_ATTEMPTS):
        answer = dynamodb.batch_get_item(RequestItems=request)
        found.extend(answer.get("Responses", {}).get(table, []))
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            break
        sleep(0.05 * 2**attempt)
    else:
        raise RuntimeError(f"results lookup throttled: {len(request[table]['Keys'])} keys unprocessed")
    items = [_plain(item) for item in found]
    by_key = {item["upload_key"]: item for item in items}
    for key in keys:
        if key in by_key:
            return by_key[key]
    return None


def public_result(upload_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """The answer body for a stored result: ``done`` or ``failed`` (the worker recorded an error)."""
    return {
        "status": "failed" if item.get("error") else "done",
        "upload_id": upload_id,
        "key": item["upload_key"],
        **{name: item.get(name) for name in RESULT_ATTRIBUTES if name != "upload_key"},
    }


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values to JSON-ready Python values (numbers as int or float)."""
    return {name: _jsonable(_deserializer.deserialize(value)) for name, value in item.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return None  # binary attributes have no place in the API answer
    return value
