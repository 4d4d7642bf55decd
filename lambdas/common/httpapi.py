"""Helpers for Lambdas behind an API Gateway HTTP API (payload format 2.0): caller identity and JSON answers.

Who the caller is depends on the route's authorization, chosen by configuration (``MLBASE_AUTH_MODE``):

- ``jwt``: a JWT authorizer validated the token; the end user is the token's ``sub`` claim
  (``requestContext.authorizer.jwt.claims.sub``).
- ``iam``: the app backend signs requests (SigV4) with its own IAM role and names the end user in the
  ``x-mlbase-user-id`` header. The header is trusted only when API Gateway reports an IAM-authorized caller
  (``requestContext.authorizer.iam``) *and* that caller is the app backend role, recognised by the role's unique
  ID (``AROA...``, the part of the caller's ``userId`` before the session name; a role deleted and re-created under
  the same name gets a new one). Any other principal allowed ``execute-api:Invoke`` gets 403 ``forbidden_caller``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from lambdas.common.uploads import is_valid_user_id

USER_ID_HEADER = "x-mlbase-user-id"


class AuthMode(StrEnum):
    IAM = "iam"
    JWT = "jwt"


class HttpError(Exception):
    """An answer to send instead of a result: status, a short machine-readable code, and what to fix."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> dict[str, Any]:
        return json_response(self.status, {"error": self.code, "message": self.message})


def parse_auth_mode(value: str | None) -> AuthMode:
    try:
        return AuthMode((value or "").strip().lower())
    except ValueError:
        raise ValueError(f"MLBASE_AUTH_MODE must be 'iam' or 'jwt', got {value!r}") from None


def backend_role_id(env: Mapping[str, str], mode: AuthMode) -> str | None:
    """``MLBASE_BACKEND_ROLE_ID``, required in IAM mode: the unique ID (``AROA...``) of the app backend role."""
    raw = env.get("MLBASE_BACKEND_ROLE_ID", "").strip()
    if mode is AuthMode.IAM and not re.fullmatch(r"AROA[A-Z0-9]{4,124}", raw):
        raise ValueError(f"MLBASE_BACKEND_ROLE_ID must be the app backend role's unique ID (AROA...), got {raw!r}")
    return raw or None


def caller_user_id(event: Mapping[str, Any], mode: AuthMode, backend_role_id: str | None = None) -> str:
    """The end user's id for this request, or HttpError 400 ``missing_user`` saying what the caller must send.

    In IAM mode only the role with unique ID `backend_role_id` may name a user (403 ``forbidden_caller``
    otherwise, and for every caller when no role ID is configured).
    """
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if mode is AuthMode.JWT:
        claims = (authorizer.get("jwt") or {}).get("claims") or {}
        user = claims.get("sub")
        where = "the JWT must carry a 'sub' claim"
    else:
        iam = authorizer.get("iam")
        if not iam:
            raise HttpError(400, "missing_user", "call this API with IAM (SigV4) authorization")
        caller_role_id = str(iam.get("userId") or "").partition(":")[0]
        if not backend_role_id or caller_role_id != backend_role_id:
            raise HttpError(403, "forbidden_caller", "only the app backend role may call this API")
        user = _header(event, USER_ID_HEADER)
        where = f"send the end user's id in the {USER_ID_HEADER} header"
    if not isinstance(user, str) or not user:
        raise HttpError(400, "missing_user", f"no user id: {where}")
    if not is_valid_user_id(user):
        raise HttpError(400, "invalid_user", "the user id must be 1-128 characters of A-Z a-z 0-9 @ | : + = _ . -")
    return user


def json_body(event: Mapping[str, Any]) -> Any:
    """The request body parsed as JSON (base64 decoded first when API Gateway encoded it); HttpError 400 if not."""
    raw = event.get("body")
    if raw is None or raw == "":
        raise HttpError(400, "malformed_json", "the request body is empty; send a JSON object")
    try:
        text = base64.b64decode(raw).decode("utf-8") if event.get("isBase64Encoded") else str(raw)
        return json.loads(text)
    except ValueError as exc:
        raise HttpError(400, "malformed_json", f"the request body is not valid JSON: {exc}") from exc


def json_response(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """An HTTP API (2.0) response; results are per user, so nothing may be cached by intermediaries."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body, separators=(",", ":")),
    }


def _header(event: Mapping[str, Any], name: str) -> str | None:
    # HTTP API lower-cases header names in 2.0 payloads; compare case-insensitively anyway for direct invokes.
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None
