"""CloudFormation custom resource: the account's Session Manager preferences (see logic.py for the scenarios).

Resource properties: ``Name`` (the document, SSM-SessionManagerRunShell) and ``Content`` (its JSON content).
CloudFormation waits for this function's answer at the pre-signed ``ResponseURL``; the answer is sent on every path,
failures included, so a stack never hangs for an hour on a missing reply.

IAM: ssm:CreateDocument, UpdateDocument, UpdateDocumentDefaultVersion, DescribeDocument on that document only.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common.aws import client
from lambdas.session_preferences.logic import apply

logger = Logger(service="session_preferences")


def respond(event: dict[str, Any], status: str, *, physical_id: str, reason: str = "", data: Any = None) -> None:
    """Answer CloudFormation (the custom-resource response protocol: a PUT of this JSON to the ResponseURL).

    Written here rather than taken from a library: the platform's Lambdas carry no third-party packages beyond
    Powertools, which has no custom-resource helper, and the protocol is one request.
    """
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000] or "See the function's log",
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data or {},
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's pre-signed S3 URL
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        answer.read()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    props = event.get("ResourceProperties", {})
    name = str(props.get("Name", ""))
    if event["RequestType"] == "Delete":
        logger.info("left in place", extra={"document": name, "scenario": 4})
        respond(event, "SUCCESS", physical_id=event.get("PhysicalResourceId") or name)
        return
    try:
        outcome = apply(client("ssm"), name, json.loads(props["Content"]))
    except Exception as err:
        logger.exception("failed", extra={"document": name})
        respond(event, "FAILED", physical_id=event.get("PhysicalResourceId") or name or "none", reason=str(err))
        return
    logger.info("applied", extra={"document": name, "version": outcome.version, "scenario": outcome.scenario})
    respond(event, "SUCCESS", physical_id=name, data={"Version": outcome.version})
