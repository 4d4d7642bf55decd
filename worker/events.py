"""Parsing SQS message bodies: S3 ObjectCreated notifications (direct or wrapped by SNS) and `s3:TestEvent`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

Kind = Literal["uploads", "test_event", "ignored", "malformed"]


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    etag: str
    size: int | None = None


@dataclass(frozen=True)
class ParsedMessage:
    kind: Kind
    uploads: tuple[Upload, ...] = ()
    reason: str = ""


def _malformed(reason: str) -> ParsedMessage:
    return ParsedMessage("malformed", reason=reason)


def _record(record: Any) -> Upload | str | None:
    """An Upload, None for events that are not object creations, or a string saying what is malformed."""
    if not isinstance(record, dict):
        return "record is not an object"
    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return None
    s3 = record.get("s3")
    if not isinstance(s3, dict):
        return "record has no s3 object"
    bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3.get("bucket"), dict) else None
    obj = s3.get("object")
    if not isinstance(bucket, str) or not bucket or not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return "record lacks s3.bucket.name or s3.object.key"
    # S3 URL-encodes keys in notifications, with '+' for spaces.
    key = unquote_plus(obj["key"])
    size = obj.get("size")
    return Upload(bucket, key, str(obj.get("eTag", "")).strip('"'), size if isinstance(size, int) else None)


def parse_message(body: str) -> ParsedMessage:
    """Classify one SQS message body; never raises."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return _malformed("body is not JSON")
    if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse_message(data["Message"])  # S3 -> SNS -> SQS fan-out
    if not isinstance(data, dict):
        return _malformed("body is not a JSON object")
    if data.get("Event") == "s3:TestEvent":
        return ParsedMessage("test_event")
    records = data.get("Records")
    if not isinstance(records, list) or not records:
        return _malformed("no Records")
    uploads: list[Upload] = []
    for record in records:
        parsed = _record(record)
        if isinstance(parsed, str):
            return _malformed(parsed)
        if parsed is not None:
            uploads.append(parsed)
    return ParsedMessage("uploads", tuple(uploads)) if uploads else ParsedMessage("ignored", reason="no ObjectCreated")


def s3_event(bucket: str, key: str, etag: str, size: int) -> dict[str, Any]:
    """The S3 notification body for one upload (keys URL-encoded like S3 does); used by the demo and tests."""
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag.strip('"')},
                },
            }
        ]
    }
