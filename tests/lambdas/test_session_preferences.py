"""Session Manager preferences custom resource, against moto's SSM on loopback and a local CloudFormation receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.session_preferences import handler as handler_module
from lambdas.session_preferences.logic import DOCUMENT_NAME, apply, session_content
from tests.conftest import LoopbackHandler, client, loopback_server
from tests.lambdas.conftest import FakeContext

CONTENT = session_content(
    kms_key_id="k-1", log_group_name="sessions", idle_minutes=20, max_session_minutes=240, description="mlbase"
)
CONSOLE_DEFAULTS = json.dumps({"schemaVersion": "1.0", "description": "console", "sessionType": "Standard_Stream",
                               "inputs": {"s3BucketName": "", "cloudWatchLogGroupName": ""}})  # fmt: skip


class Receiver(LoopbackHandler):
    """CloudFormation's end of the pre-signed ResponseURL: records each PUT."""

    answers: list[dict[str, Any]] = []

    def do_PUT(self) -> None:  # noqa: N802 - the http.server method name
        Receiver.answers.append(json.loads(self.body()))
        self.reply(200, b"")


@pytest.fixture
def response_url() -> Iterator[str]:
    Receiver.answers = []
    with loopback_server(Receiver) as url:
        yield f"{url}/cfn-response"


def event(request_type: str, url: str, content: dict[str, Any] | str = CONTENT) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:ap-northeast-1:222222222222:stack/Research-Network/1",
        "RequestId": "r-1",
        "LogicalResourceId": "SessionPreferences",
        "PhysicalResourceId": DOCUMENT_NAME if request_type != "Create" else None,
        "ResourceProperties": {
            "Name": DOCUMENT_NAME,
            "Content": content if isinstance(content, str) else json.dumps(content),
        },
    }


def default_content(ssm: Any) -> dict[str, Any]:
    document = ssm.get_document(Name=DOCUMENT_NAME)  # the default version
    parsed: dict[str, Any] = json.loads(document["Content"])
    return parsed


def test_creates_the_document_where_none_exists(aws: str) -> None:
    ssm = client("ssm", aws)
    assert apply(ssm, DOCUMENT_NAME, CONTENT).scenario == 1
    assert default_content(ssm) == CONTENT


def test_adopts_the_document_the_console_created(aws: str) -> None:
    ssm = client("ssm", aws)
    ssm.create_document(Name=DOCUMENT_NAME, Content=CONSOLE_DEFAULTS, DocumentType="Session", DocumentFormat="JSON")
    outcome = apply(ssm, DOCUMENT_NAME, CONTENT)
    assert (outcome.scenario, outcome.version) == (2, "2")
    assert default_content(ssm) == CONTENT
    assert ssm.describe_document(Name=DOCUMENT_NAME)["Document"]["DefaultVersion"] == "2"


def test_reapplying_the_same_content_changes_nothing(aws: str) -> None:
    ssm = client("ssm", aws)
    apply(ssm, DOCUMENT_NAME, CONTENT)
    outcome = apply(ssm, DOCUMENT_NAME, CONTENT)
    assert (outcome.scenario, outcome.version) == (3, "1")
    assert ssm.describe_document(Name=DOCUMENT_NAME)["Document"]["LatestVersion"] == "1"


def test_handler_answers_cloudformation_on_create(aws: str, response_url: str, lambda_context: FakeContext) -> None:
    handler_module.handler(event("Create", response_url), lambda_context)
    (answer,) = Receiver.answers
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == DOCUMENT_NAME
    assert answer["Data"] == {"Version": "1"}
    assert (answer["RequestId"], answer["LogicalResourceId"]) == ("r-1", "SessionPreferences")
    assert default_content(client("ssm", aws)) == CONTENT


def test_handler_leaves_the_document_on_delete(aws: str, response_url: str, lambda_context: FakeContext) -> None:
    ssm = client("ssm", aws)
    apply(ssm, DOCUMENT_NAME, CONTENT)
    handler_module.handler(event("Delete", response_url), lambda_context)
    assert Receiver.answers[0]["Status"] == "SUCCESS"
    assert default_content(ssm) == CONTENT


def test_handler_reports_a_failure_instead_of_hanging(aws: str, response_url: str, lambda_context: FakeContext) -> None:
    handler_module.handler(event("Update", response_url, content="{not json"), lambda_context)
    (answer,) = Receiver.answers
    assert answer["Status"] == "FAILED"
    assert "Expecting property name" in answer["Reason"]
    assert answer["PhysicalResourceId"] == DOCUMENT_NAME
