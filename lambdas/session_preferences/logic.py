"""Session Manager preferences as a CloudFormation custom resource: create the account's document, or adopt it.

Session Manager keeps an account's (and region's) preferences in one Session document, `SSM-SessionManagerRunShell`.
The console creates it the first time anyone opens the preferences page, so a template that creates it by name fails
with DocumentAlreadyExists in such an account. This resource creates it where it is missing and otherwise adopts it:
a new version with the platform's content, made the default version (the one Session Manager reads).

Scenarios (each return names its number):
1. Given no document, when the stack is created or updated, then the document is created with the content.
2. Given a document with other content (the console's defaults, a hand edit), when created or updated, then a new
   version with the content becomes the default.
3. Given a document whose latest version already holds the content, when created or updated, then that version
   becomes the default and nothing else changes.
4. When the stack deletes the resource, then the document stays as it is: removing it would return the account to
   unlogged, unencrypted sessions, which is not what taking a stack down should do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DOCUMENT_NAME = "SSM-SessionManagerRunShell"


@dataclass(frozen=True)
class Outcome:
    version: str
    scenario: int


def session_content(
    *, kms_key_id: str, log_group_name: str, idle_minutes: int, max_session_minutes: int, description: str
) -> dict[str, Any]:
    """The Session document's content: KMS-encrypted sessions, streamed to an encrypted log group, timeouts."""
    return {
        "schemaVersion": "1.0",
        "description": description,
        "sessionType": "Standard_Stream",
        "inputs": {
            "kmsKeyId": kms_key_id,
            "cloudWatchLogGroupName": log_group_name,
            "cloudWatchEncryptionEnabled": True,
            "cloudWatchStreamingEnabled": True,
            "s3BucketName": "",
            "idleSessionTimeout": str(idle_minutes),
            "maxSessionDuration": str(max_session_minutes),
            "runAsEnabled": False,
            "shellProfile": {"linux": "", "windows": ""},
        },
    }


def apply(ssm: Any, name: str, content: dict[str, Any]) -> Outcome:
    """Create or adopt document `name` with `content` (scenarios 1-3)."""
    text = json.dumps(content, sort_keys=True)
    try:
        ssm.create_document(Name=name, Content=text, DocumentType="Session", DocumentFormat="JSON")
        return Outcome("1", 1)
    except ssm.exceptions.DocumentAlreadyExists:
        pass
    try:
        updated = ssm.update_document(Name=name, Content=text, DocumentVersion="$LATEST", DocumentFormat="JSON")
        version, scenario = str(updated["DocumentDescription"]["DocumentVersion"]), 2
    except ssm.exceptions.DuplicateDocumentContent:
        version, scenario = str(ssm.describe_document(Name=name)["Document"]["LatestVersion"]), 3
    ssm.update_document_default_version(Name=name, DocumentVersion=version)
    return Outcome(version, scenario)
