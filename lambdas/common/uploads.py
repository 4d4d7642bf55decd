"""The photo-upload naming contract shared by the upload API, the results API and the worker.

An upload lives at ``uploads/<user-id>/<upload-id>.<ext>``: the user id comes from the caller's authorization,
the upload id is a random UUID4 chosen by the upload API, the extension follows the declared content type.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from types import MappingProxyType

UPLOAD_PREFIX = "uploads/"
CONTENT_TYPE_EXTENSIONS: Mapping[str, str] = MappingProxyType(
    {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}
)
EXTENSIONS: tuple[str, ...] = tuple(CONTENT_TYPE_EXTENSIONS.values())

# Ids from Cognito (UUIDs), other OIDC providers ("auth0|abc", e-mail addresses) and app backends all fit; a slash
# or a dot-only segment could step out of the caller's own prefix, so they never do.
_USER_ID = re.compile(r"[A-Za-z0-9@|:+=_.-]{1,128}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_KEY = re.compile(rf"{UPLOAD_PREFIX}(?P<user>[^/]+)/(?P<upload>[^/.]+)\.(?P<ext>[a-z]+)")


def is_valid_user_id(user_id: str) -> bool:
    """True when `user_id` is safe as one key segment."""
    return bool(_USER_ID.fullmatch(user_id)) and user_id.strip(".") != ""


def normalize_upload_id(value: str) -> str | None:
    """The canonical (lower-case, hyphenated) form of a UUID upload id, or None when `value` is not one."""
    candidate = value.strip().lower()
    return candidate if _UPLOAD_ID.fullmatch(candidate) else None


def new_upload_id() -> str:
    return str(uuid.uuid4())


def upload_key(user_id: str, upload_id: str, extension: str) -> str:
    """``uploads/<user>/<uuid>.<ext>``; refuses parts that would break the layout."""
    if not is_valid_user_id(user_id):
        raise ValueError(f"invalid user id {user_id!r}")
    if normalize_upload_id(upload_id) != upload_id:
        raise ValueError(f"invalid upload id {upload_id!r}")
    if extension not in EXTENSIONS:
        raise ValueError(f"unknown extension {extension!r}")
    return f"{UPLOAD_PREFIX}{user_id}/{upload_id}.{extension}"


def candidate_keys(user_id: str, upload_id: str) -> list[str]:
    """Every key an upload id of this user can have, one per known extension."""
    return [upload_key(user_id, upload_id, ext) for ext in EXTENSIONS]


def parse_upload_key(key: str) -> tuple[str, str, str] | None:
    """(user id, upload id, extension) of a well-formed upload key, else None."""
    match = _KEY.fullmatch(key)
    if not match or match["ext"] not in EXTENSIONS or not is_valid_user_id(match["user"]):
        return None
    if normalize_upload_id(match["upload"]) != match["upload"]:
        return None
    return match["user"], match["upload"], match["ext"]
