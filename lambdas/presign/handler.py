"""Upload API (`POST /uploads`): answers a pre-signed S3 POST for one photo of the calling user.

Request (HTTP API payload 2.0), body ``{"content_type": "image/jpeg", "content_length": 12345}``; the length is
optional and, when given, becomes the upper bound of the POST policy's ``content-length-range``.
Answer 200::

    {"upload_id": "<uuid4>", "key": "uploads/<user>/<uuid4>.jpg", "url": "https://<bucket>.s3...",
     "fields": {...}, "max_bytes": 12345, "expires_at": "2026-11-27T10:05:00Z"}

The phone sends a ``multipart/form-data`` POST to ``url`` with every entry of ``fields`` followed by the ``file``
part. The policy pins bucket, key and Content-Type, limits the size, and expires after the configured time, so
a pre-signed POST is used rather than a PUT (a pre-signed PUT cannot limit the size).
Bad requests answer 400 ``{"error": <code>, "message": <what to fix>}`` with codes ``malformed_json``,
``missing_content_type``, ``unsupported_content_type``, ``invalid_content_length``, ``too_large``,
``missing_user``, ``invalid_user``.

How the app backend calls it (``MLBASE_AUTH_MODE``):
- ``jwt``: the backend (or the app) forwards the end user's access token as ``Authorization: Bearer <jwt>``; the
  user id is the token's ``sub`` claim.
- ``iam``: the backend signs the request with SigV4 using its own IAM role (``execute-api:Invoke`` on this route)
  and names the end user in the ``x-mlbase-user-id`` header. The header is trusted only on IAM-authorized
  requests from that role (its unique ID is ``MLBASE_BACKEND_ROLE_ID``); any other IAM principal, even one allowed
  to invoke the API, gets 403 ``{"error": "forbidden_caller"}``.

Environment variables:
    MLBASE_UPLOAD_BUCKET        upload bucket name (required)
    MLBASE_AUTH_MODE            ``iam`` or ``jwt`` (required): how the caller and the user are identified
    MLBASE_BACKEND_ROLE_ID      unique ID (``AROA...``) of the app backend role (required in ``iam`` mode)
    MLBASE_MAX_UPLOAD_BYTES     largest accepted photo in bytes (default 20971520 = 20 MiB)
    MLBASE_URL_EXPIRY_SECONDS   lifetime of the pre-signed POST, 1..900 (default 300)
    MLBASE_ENDPOINT_URL         optional AWS endpoint override (a local AWS double in tests); unset in AWS
IAM: s3:PutObject on ``uploads/*`` of the bucket (the signature carries the function's role).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.aws import client
from lambdas.common.httpapi import HttpError, caller_user_id, json_body, json_response
from lambdas.common.uploads import new_upload_id
from lambdas.presign.logic import Settings, parse_request, presigned_upload

logger = Logger(service="presign")


@cache
def settings() -> Settings:
    """Read once per container; a misconfigured function fails its first invocation with a clear message."""
    return Settings.from_env(os.environ)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    try:
        user_id = caller_user_id(event, config.auth_mode, config.backend_role_id)
        request = parse_request(json_body(event), config.max_upload_bytes)
    except HttpError as exc:
        logger.info("rejected", extra={"error": exc.code})
        return exc.response()
    answer = presigned_upload(client("s3"), config, user_id, request, new_upload_id())
    logger.info("presigned", extra={"key": answer["key"], "content_type": request.content_type})
    return json_response(200, answer)
