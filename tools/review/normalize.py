"""Machine-independent form of a synthesized CloudFormation template.

Asset hashes (64 hex digits: S3 object keys such as ``<hash>.zip``, container image tags, ``aws:asset:path``
metadata) change whenever a Lambda's or an image's source changes, and would make every snapshot diff noisy.
Both the snapshot test and ``make review`` compare templates through :func:`normalize_template`, so a fresh synth
and a committed snapshot are normalized the same way.
"""

from __future__ import annotations

import re
from typing import Any

ASSET_HASH = "ASSET-HASH"

# Exactly 64 hex digits not embedded in a longer hex run: a SHA-256 asset hash. Bootstrap names such as
# ``cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}`` contain no such run and stay as they are.
_ASSET_HASH_RE = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def normalize_string(value: str) -> str:
    """Replace every 64-hex asset hash inside ``value`` with ``ASSET-HASH``."""
    return _ASSET_HASH_RE.sub(ASSET_HASH, value)


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return normalize_string(value)
    if isinstance(value, dict):
        return {normalize_string(k) if isinstance(k, str) else k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def normalize_template(template: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``template`` with asset hashes replaced by ``ASSET-HASH``, in values and in keys.

    Pure and idempotent: the input is not modified, and normalizing twice gives the same result.
    """
    result: dict[str, Any] = _normalize(template)
    return result
