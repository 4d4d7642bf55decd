"""Results: one DynamoDB item per upload (conditional on key + ETag, so redelivered messages write once) and a
notification on the results topic.

The item carries `notify_pending` until the topic publish succeeds: a message redelivered after the put but before
the publish rewrites and republishes, while one redelivered after both is skipped. Topic delivery is therefore
at-least-once and the table exactly one item per (key, ETag).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

_serialize = TypeSerializer().serialize


@dataclass(frozen=True)
class Result:
    bucket: str
    upload_key: str
    etag: str
    model_version: str
    label: str | None = None
    score: float | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    processed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def message(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "upload_key": self.upload_key,
            "etag": self.etag,
            "label": self.label,
            "score": self.score,
            "model_version": self.model_version,
            "error": self.error,
            "timings": self.timings,
            "processed_at": self.processed_at,
        }


def to_item(result: Result, ttl_days: int, notify_pending: bool, now: float | None = None) -> dict[str, Any]:
    """The DynamoDB item (low-level attribute-value form) for a result."""
    expires = int((now if now is not None else time.time()) + ttl_days * 86400)
    plain: dict[str, Any] = {
        "upload_key": result.upload_key,
        "etag": result.etag,
        "label": result.label,
        "score": None if result.score is None else Decimal(str(round(result.score, 6))),
        "model_version": result.model_version,
        "error": result.error,
        "timings": {k: Decimal(str(round(v, 2))) for k, v in result.timings.items()},
        "processed_at": result.processed_at,
        "expires_at": expires,
    }
    if notify_pending:
        plain["notify_pending"] = True
    return {k: _serialize(v) for k, v in plain.items()}


class ResultStore:
    def __init__(
        self, dynamodb: Any, table: str, sns: Any | None, topic_arn: str | None, ttl_days: int, threads: int = 16
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.sns = sns
        self.topic_arn = topic_arn
        self.ttl_days = ttl_days
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="results")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def write_many(self, results: list[Result]) -> list[BaseException | None]:
        """Write and publish each result; returns None per success (including duplicates) or the exception."""
        # The same upload twice in one batch (a duplicate delivery) is written and published once.
        unique = {(r.upload_key, r.etag): r for r in reversed(results)}
        outcomes = dict(zip(unique, self._pool.map(self._write_one, unique.values()), strict=True))
        return [outcomes[(r.upload_key, r.etag)] for r in results]

    def _write_one(self, result: Result) -> BaseException | None:
        try:
            if self._put(result):
                self._publish(result)
        except Exception as exc:
            return exc
        return None

    def _put(self, result: Result) -> bool:
        """True when this call wrote the item and a publish is owed; False for a duplicate already published."""
        notify = bool(self.topic_arn)
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=to_item(result, self.ttl_days, notify),
                ConditionExpression="attribute_not_exists(upload_key) OR etag <> :etag OR notify_pending = :true",
                ExpressionAttributeValues={":etag": {"S": result.etag}, ":true": {"BOOL": True}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return notify

    def _publish(self, result: Result) -> None:
        attributes = {"label": {"DataType": "String", "StringValue": result.label or "none"}}
        if result.error:
            attributes["error"] = {"DataType": "String", "StringValue": result.error}
        assert self.sns is not None, "a results topic needs an SNS client"
        self.sns.publish(TopicArn=self.topic_arn, Message=json.dumps(result.message()), MessageAttributes=attributes)
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"upload_key": {"S": result.upload_key}},
                UpdateExpression="REMOVE notify_pending",
                ConditionExpression="etag = :etag",
                ExpressionAttributeValues={":etag": {"S": result.etag}},
            )
        except ClientError as exc:
            # A newer upload under the same key replaced the item meanwhile; its own message owns the flag.
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
