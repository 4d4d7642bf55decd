"""Results API (`GET /results/{upload_id}`): the classification result of one of the caller's own uploads.

Answers (HTTP API payload 2.0):
    200 ``{"status": "done"|"failed", "upload_id", "key", "etag", "label", "score", "model_version", "error",
          "timings", "processed_at"}`` (``failed`` when the worker recorded an error)
    404 ``{"status": "not_found"}`` when the id is not a UUID, has no result yet, or belongs to another user:
        these are deliberately indistinguishable
    400 ``{"error": "missing_user"|"invalid_user", "message": ...}`` when the caller's user id is absent
    403 ``{"error": "forbidden_caller", "message": ...}`` in IAM mode, for any IAM principal but the app backend role
The user is identified as in the upload API (see :mod:`lambdas.common.httpapi`): the JWT ``sub`` claim, or the
``x-mlbase-user-id`` header on IAM-authorized calls from the app backend role. Lookup design:
:mod:`lambdas.results.logic`.

Environment variables:
    MLBASE_RESULTS_TABLE   DynamoDB table of results, partition key ``upload_key`` (string) (required)
    MLBASE_AUTH_MODE       ``iam`` or ``jwt`` (required), the same as the upload API's
    MLBASE_BACKEND_ROLE_ID unique ID (``AROA...``) of the app backend role (required in ``iam`` mode)
    MLBASE_ENDPOINT_URL    optional AWS endpoint override (a local AWS double in tests); unset in AWS
IAM: dynamodb:BatchGetItem on the table.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.aws import client
from lambdas.common.httpapi import HttpError, caller_user_id, json_response
from lambdas.results.logic import Settings, fetch_result, keys_to_try, public_result

logger = Logger(service="results")

NOT_FOUND = {"status": "not_found"}


@cache
def settings() -> Settings:
    """Read once per container; a misconfigured function fails its first invocation with a clear message."""
    return Settings.from_env(os.environ)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    try:
        user_id = caller_user_id(event, config.auth_mode, config.backend_role_id)
    except HttpError as exc:
        logger.info("rejected", extra={"error": exc.code})
        return exc.response()
    raw_id = (event.get("pathParameters") or {}).get("upload_id")
    lookup = keys_to_try(user_id, raw_id)
    if lookup is None:
        logger.info("malformed upload id")
        return json_response(404, NOT_FOUND)
    upload_id, keys = lookup
    item = fetch_result(client("dynamodb"), config.table, keys)
    if item is None:
        return json_response(404, NOT_FOUND)
    return json_response(200, public_result(upload_id, item))
