"""Upload API decisions: validate the request, then build a pre-signed POST whose policy enforces it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas.common.httpapi import AuthMode, HttpError, backend_role_id, parse_auth_mode
from lambdas.common.uploads import CONTENT_TYPE_EXTENSIONS, upload_key

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_EXPIRY_SECONDS = 300
MAX_EXPIRY_SECONDS = 900
# S3 caps a single POST upload at 5 GiB.
S3_POST_LIMIT_BYTES = 5 * 1024**3
ACCEPTED = ", ".join(sorted(CONTENT_TYPE_EXTENSIONS))


@dataclass(frozen=True)
class Settings:
    bucket: str
    max_upload_bytes: int
    expiry_seconds: int
    auth_mode: AuthMode
    backend_role_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Validate the environment; a ValueError names the variable, the bad value and what is allowed."""
        bucket = env.get("MLBASE_UPLOAD_BUCKET", "").strip()
        if not bucket:
            raise ValueError("MLBASE_UPLOAD_BUCKET must name the upload bucket")
        max_bytes = _int_env(env, "MLBASE_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, 1, S3_POST_LIMIT_BYTES)
        expiry = _int_env(env, "MLBASE_URL_EXPIRY_SECONDS", DEFAULT_EXPIRY_SECONDS, 1, MAX_EXPIRY_SECONDS)
        mode = parse_auth_mode(env.get("MLBASE_AUTH_MODE"))
        return cls(bucket, max_bytes, expiry, mode, backend_role_id(env, mode))


@dataclass(frozen=True)
class UploadRequest:
    content_type: str
    content_length: int | None

    @property
    def extension(self) -> str:
        return CONTENT_TYPE_EXTENSIONS[self.content_type]


def parse_request(body: Any, max_upload_bytes: int) -> UploadRequest:
    """The request body (already parsed JSON) as an UploadRequest, or HttpError 400 saying what to fix."""
    if not isinstance(body, dict):
        raise HttpError(400, "malformed_json", 'the body must be a JSON object like {"content_type": "image/jpeg"}')
    content_type = body.get("content_type")
    if content_type is None or content_type == "":
        raise HttpError(400, "missing_content_type", f"content_type is required: one of {ACCEPTED}")
    normalized = content_type.strip().lower() if isinstance(content_type, str) else ""
    if normalized not in CONTENT_TYPE_EXTENSIONS:
        raise HttpError(
            400, "unsupported_content_type", f"content_type {content_type!r} is not accepted: use one of {ACCEPTED}"
        )
    length = body.get("content_length")
    if length is not None:
        # bool is an int in Python; `true` is not a length.
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise HttpError(400, "invalid_content_length", "content_length must be a positive integer (bytes)")
        if length > max_upload_bytes:
            raise HttpError(400, "too_large", f"content_length {length} exceeds the limit of {max_upload_bytes} bytes")
    return UploadRequest(normalized, length)


def post_conditions(request: UploadRequest, max_upload_bytes: int) -> list[Any]:
    """The policy conditions beyond bucket and key (which boto3 adds): exact content type and size range.

    A declared length tightens the upper bound to that length: the phone uploads the file it measured.
    """
    upper = request.content_length or max_upload_bytes
    return [{"Content-Type": request.content_type}, ["content-length-range", 1, upper]]


def presigned_upload(
    s3: Any, settings: Settings, user_id: str, request: UploadRequest, upload_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """The API answer: where and how to POST the photo, and the ids to read its result later."""
    key = upload_key(user_id, upload_id, request.extension)
    post = s3.generate_presigned_post(
        Bucket=settings.bucket,
        Key=key,
        Fields={"Content-Type": request.content_type},
        Conditions=post_conditions(request, settings.max_upload_bytes),
        ExpiresIn=settings.expiry_seconds,
    )
    expires_at = (now or datetime.now(UTC)) + timedelta(seconds=settings.expiry_seconds)
    return {
        "upload_id": upload_id,
        "key": key,
        "url": post["url"],
        "fields": post["fields"],
        "max_bytes": request.content_length or settings.max_upload_bytes,
        "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _int_env(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {raw!r}")
    return int(raw)
