"""The `/gpu` Slack bot: signature checks, parsing and permissions, then every command end to end.

End to end means: a signed HTTP API event into the handler (the bot), the asynchronous invocation of the job function
it makes captured on its way to moto's Lambda (run without Docker), that payload fed back into the handler as Lambda
would run the job function, and the replies read from the local Slack server. Seen signatures live in a DynamoDB
table in moto. Capacity errors are injected with a botocore `before-call` hook on the
handler's own EC2 client (moto never runs out of capacity): the hook answers StartInstances with the error AWS sends.
"""

from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from slack_sdk.signature import SignatureVerifier

from lambdas.chatops import handler as bot
from lambdas.chatops.logic import (
    JOB_MAX_AGE_SECONDS,
    USAGE,
    Command,
    CommandError,
    RosterEntry,
    Settings,
    SignatureProblem,
    Verb,
    candidate_types,
    check_signature,
    may_run,
    parse_command,
    parse_settings,
)
from lambdas.common import aws as common_aws
from lambdas.common import secrets as common_secrets
from tests.conftest import SlackServer, client
from tests.lambdas.conftest import FakeContext

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ROSTER_ITEMS = [
    {"name": "alice", "slack_user_id": "UALICE", "instance_type": "g5.xlarge"},
    {"name": "bob", "slack_user_id": "UBOB", "instance_type": "g4dn.xlarge"},
]
ROSTER = {item["name"]: RosterEntry(**item) for item in ROSTER_ITEMS}
SETTINGS = Settings(signing_secret_arn="arn", roster=ROSTER, admins=frozenset({"UADMIN"}), fallback_types={})
JOBS_FUNCTION = "gpu-jobs"
TRIGGERS = itertools.count(1)  # Slack gives every slash command its own trigger_id, so no two bodies are alike


# ---------------------------------------------------------------- signature


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature, made by slack_sdk as Slack makes it."""
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return signature


def test_signature_made_by_slack_sdk_is_accepted() -> None:
    body = b"token=x&team_id=T1&user_id=UALICE&command=%2Fgpu&text=list"
    timestamp = str(int(time.time()))
    assert check_signature(SIGNING_SECRET, timestamp, sign(SIGNING_SECRET, timestamp, body), body, time.time()) is None


@pytest.mark.parametrize(
    ("timestamp", "signature", "now_offset", "expected"),
    [
        ("1700000000", "good", 0, None),
        ("1700000000", "good", 300, None),
        ("1700000000", "good", 301, SignatureProblem.STALE),
        ("1700000000", "good", -301, SignatureProblem.STALE),
        ("1700000000", "v0=" + "0" * 64, 0, SignatureProblem.FORGED),
        ("1700000000", "other-secret", 0, SignatureProblem.FORGED),
        (None, "good", 0, SignatureProblem.MISSING),
        ("1700000000", None, 0, SignatureProblem.MISSING),
        ("soon", "good", 0, SignatureProblem.MISSING),
    ],
)
def test_check_signature(
    timestamp: str | None, signature: str | None, now_offset: int, expected: SignatureProblem | None
) -> None:
    body = b"text=list"
    if signature == "good":
        signature = sign(SIGNING_SECRET, timestamp or "0", body)
    elif signature == "other-secret":
        signature = sign("another", timestamp or "0", body)
    assert check_signature(SIGNING_SECRET, timestamp, signature, body, 1_700_000_000 + now_offset) == expected


@pytest.mark.parametrize(
    ("now_offset", "expected"),
    [
        (0, None),
        (JOB_MAX_AGE_SECONDS, None),
        (JOB_MAX_AGE_SECONDS + 1, SignatureProblem.STALE),
        (-300, None),
        (-301, SignatureProblem.STALE),
    ],
)
def test_job_window_allows_for_the_queue_but_not_the_future(now_offset: int, expected: SignatureProblem | None) -> None:
    body = b"text=list"
    signature = sign(SIGNING_SECRET, "1700000000", body)
    now = 1_700_000_000 + now_offset
    assert check_signature(SIGNING_SECRET, "1700000000", signature, body, now, max_age=JOB_MAX_AGE_SECONDS) == expected


def test_job_window_still_checks_the_signature() -> None:
    signature = sign("another", "1700000000", b"text=list")
    now = 1_700_000_000 + JOB_MAX_AGE_SECONDS
    problem = check_signature(SIGNING_SECRET, "1700000000", signature, b"text=list", now, max_age=JOB_MAX_AGE_SECONDS)
    assert problem is SignatureProblem.FORGED


def test_body_that_is_not_utf8_is_forged() -> None:
    body = b"text=\xff\xfe"
    problem = check_signature(SIGNING_SECRET, "1700000000", "v0=" + "0" * 64, body, 1_700_000_000)
    assert problem is SignatureProblem.FORGED


def test_signature_covers_the_body() -> None:
    signature = sign(SIGNING_SECRET, "1700000000", b"text=stop+alice")
    problem = check_signature(SIGNING_SECRET, "1700000000", signature, b"text=stop+bob", 1_700_000_000)
    assert problem is SignatureProblem.FORGED


# ---------------------------------------------------------------- parsing and permissions


@pytest.mark.parametrize(
    ("text", "caller", "expected"),
    [
        ("", "UALICE", Command(Verb.HELP)),
        ("help", "UX", Command(Verb.HELP)),
        ("LIST", "UX", Command(Verb.LIST)),
        ("status", "UALICE", Command(Verb.STATUS, "alice")),
        ("status bob", "UALICE", Command(Verb.STATUS, "bob")),
        ("start", "UBOB", Command(Verb.START, "bob")),
        ("stop alice", "UADMIN", Command(Verb.STOP, "alice")),
        ("keep 6", "UALICE", Command(Verb.KEEP, "alice", 6.0)),
        ("keep bob 1.5", "UBOB", Command(Verb.KEEP, "bob", 1.5)),
    ],
)
def test_parse_command(text: str, caller: str, expected: Command) -> None:
    assert parse_command(text, caller, ROSTER, 168) == expected


@pytest.mark.parametrize(
    ("text", "caller", "message"),
    [
        ("reboot alice", "UALICE", "Unknown command `reboot`."),
        ("list all", "UALICE", "`list` takes no arguments."),
        ("stop alice bob", "UADMIN", "`stop` takes one NAME, got `alice bob`."),
        ("stop carol", "UADMIN", "No one called `carol` in the roster; known: alice, bob."),
        ("stop", "UADMIN", "You have no instance in the roster; say whose: `/gpu stop NAME`."),
        ("keep", "UALICE", "`keep` needs HOURS"),
        ("keep alice soon", "UALICE", "HOURS must be a number, got `soon`."),
        ("keep alice 0", "UALICE", "HOURS must be more than 0 and at most 168, got `0`."),
        ("keep alice 200", "UALICE", "HOURS must be more than 0 and at most 168, got `200`."),
        ("keep alice nan", "UALICE", "HOURS must be more than 0"),
    ],
)
def test_parse_command_errors(text: str, caller: str, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse_command(text, caller, ROSTER, 168)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("caller", "command", "allowed"),
    [
        ("UALICE", Command(Verb.START, "alice"), True),
        ("UBOB", Command(Verb.START, "alice"), False),
        ("UBOB", Command(Verb.KEEP, "alice", 1), False),
        ("UADMIN", Command(Verb.STOP, "bob"), True),
        ("UBOB", Command(Verb.STATUS, "alice"), True),
        ("USTRANGER", Command(Verb.LIST), True),
    ],
)
def test_only_owner_or_admin_may_act(caller: str, command: Command, allowed: bool) -> None:
    assert may_run(caller, command, SETTINGS) is allowed


def test_candidate_types() -> None:
    fallbacks = {"g5.xlarge": ("g4dn.xlarge", "g6.xlarge")}
    assert candidate_types("g5.xlarge", "g5.xlarge", fallbacks) == ["g5.xlarge", "g4dn.xlarge", "g6.xlarge"]
    assert candidate_types("g4dn.xlarge", "g5.xlarge", fallbacks) == ["g5.xlarge", "g4dn.xlarge", "g6.xlarge"]
    assert candidate_types("g5.xlarge", "g5.xlarge", {}) == ["g5.xlarge"]
    assert candidate_types("g6.xlarge", None, {}) == ["g6.xlarge"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MLBASE_SIGNING_SECRET_ARN must be set"),
        ({"MLBASE_SEEN_TABLE": ""}, "MLBASE_SEEN_TABLE must be set"),
        ({"MLBASE_FALLBACK_INSTANCE_TYPES": "[]"}, "MLBASE_FALLBACK_INSTANCE_TYPES must be a JSON object"),
        ({"MLBASE_FALLBACK_INSTANCE_TYPES": '{"g5.xlarge": "g4dn"}'}, "must be a list of instance types"),
        ({"MLBASE_ROSTER": '[{"name": "a", "slack_user_id": "U"}]'}, r"MLBASE_ROSTER\[0\] needs non-empty strings"),
        ({"MLBASE_KEEP_MAX_HOURS": "x"}, "MLBASE_KEEP_MAX_HOURS must be a number"),
    ],
)
def test_bad_environment_is_refused(env: dict[str, str], message: str) -> None:
    base = {"MLBASE_SIGNING_SECRET_ARN": "arn:x", "MLBASE_SEEN_TABLE": "seen"} if env else {}
    with pytest.raises(ValueError, match=message):
        parse_settings(base | env)


def test_settings_parse_admins_and_fallbacks() -> None:
    parsed = parse_settings(
        {
            "MLBASE_SIGNING_SECRET_ARN": "arn:x",
            "MLBASE_SEEN_TABLE": "seen",
            "MLBASE_ADMIN_SLACK_IDS": " UADMIN, UOPS ,",
            "MLBASE_FALLBACK_INSTANCE_TYPES": '{"g5.xlarge": ["g4dn.xlarge"]}',
            "MLBASE_ROSTER": json.dumps(ROSTER_ITEMS),
        }
    )
    assert parsed.admins == frozenset({"UADMIN", "UOPS"})
    assert parsed.fallback_types == {"g5.xlarge": ("g4dn.xlarge",)}
    assert parsed.roster == ROSTER


# ---------------------------------------------------------------- the handler against moto and a local Slack


@dataclass
class Bot:
    endpoint: str
    slack: SlackServer
    context: FakeContext
    invocations: list[dict[str, Any]] = field(default_factory=list)

    def event(self, text: str, user: str, *, encode: bool = False, age: int = 0, secret: str = SIGNING_SECRET) -> Any:
        form = {
            "token": "legacy",
            "team_id": "T1",
            "channel_id": "CGENERAL",
            "user_id": user,
            "command": "/gpu",
            "text": text,
            "response_url": f"{self.slack.url}/commands/T1/response",
            "trigger_id": f"1.2.{next(TRIGGERS)}",
        }
        body = urllib.parse.urlencode(form).encode()
        timestamp = str(int(time.time()) - age)
        return {
            "version": "2.0",
            "routeKey": "POST /slack/commands",
            "rawPath": "/slack/commands",
            "headers": {
                "content-type": "application/x-www-form-urlencoded",
                "x-slack-request-timestamp": timestamp,
                "x-slack-signature": sign(secret, timestamp, body),
            },
            "requestContext": {"http": {"method": "POST", "sourceIp": "192.0.2.10"}},
            "body": base64.b64encode(body).decode() if encode else body.decode(),
            "isBase64Encoded": encode,
        }

    def post(self, text: str, user: str, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = bot.handler(self.event(text, user, **kwargs), self.context)
        return response

    def command(self, text: str, user: str) -> tuple[str, dict[str, Any]]:
        """Slash command end to end: HTTP ack, then the captured asynchronous invocation."""
        response = self.post(text, user)
        assert response["statusCode"] == 200
        ack = json.loads(response["body"])
        assert ack["response_type"] == "ephemeral"
        [invocation] = self.invocations
        self.invocations.clear()
        assert invocation["FunctionName"] == JOBS_FUNCTION
        assert invocation["InvocationType"] == "Event"
        result: dict[str, Any] = bot.handler(json.loads(invocation["Payload"]), self.context)
        return ack["text"], result

    def job(self, text: str, user: str, *, age: int = 0, secret: str = SIGNING_SECRET) -> dict[str, Any]:
        """A job payload as the bot would make it, signed (or not) as Slack would."""
        event = self.event(text, user, age=age, secret=secret)
        headers = event["headers"]
        return {
            "mlbase_chatops": {
                "body": event["body"],
                "timestamp": headers["x-slack-request-timestamp"],
                "signature": headers["x-slack-signature"],
            }
        }

    def replies(self) -> list[str]:
        return [r.json()["text"] for r in self.slack.requests if r.path == "/commands/T1/response"]

    def channel(self) -> list[str]:
        return [r.json()["text"] for r in self.slack.requests if r.path == "/services/T1/B1/channel"]


def moto_config(endpoint: str, config: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=json.dumps(config).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def chatops(
    aws: str, slack_server: SlackServer, lambda_context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bot]:
    """A deployed bot: secrets and its own function in moto, environment set, invocations captured."""
    secrets = client("secretsmanager", aws)
    signing = secrets.create_secret(Name="slack-signing", SecretString=SIGNING_SECRET)
    channel = secrets.create_secret(
        Name="slack-channel", SecretString=json.dumps({"webhook_url": f"{slack_server.url}/services/T1/B1/channel"})
    )
    monkeypatch.setenv("MLBASE_SIGNING_SECRET_ARN", signing["ARN"])
    monkeypatch.setenv("MLBASE_SLACK_SECRET_ARN", channel["ARN"])
    monkeypatch.setenv("MLBASE_ROSTER", json.dumps(ROSTER_ITEMS))
    monkeypatch.setenv("MLBASE_ADMIN_SLACK_IDS", "UADMIN")
    monkeypatch.setenv("MLBASE_FALLBACK_INSTANCE_TYPES", json.dumps({"g5.xlarge": ["g4dn.xlarge"]}))
    monkeypatch.setenv("MLBASE_JOBS_FUNCTION", JOBS_FUNCTION)
    table = client("dynamodb", aws).create_table(
        TableName="seen-signatures",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )["TableDescription"]["TableName"]
    monkeypatch.setenv("MLBASE_SEEN_TABLE", table)
    bot.settings.cache_clear()
    common_secrets.clear()

    # moto's Docker-free Lambda accepts the invocation; the function itself is never run there.
    moto_config(aws, {"lambda": {"use_docker": False}})
    role = client("iam", aws).create_role(RoleName="chatops", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return None\n")
    client("lambda", aws).create_function(
        FunctionName=JOBS_FUNCTION,
        Runtime="python3.11",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": code.getvalue()},
    )
    state = Bot(aws, slack_server, lambda_context)

    def capture(params: dict[str, Any], **_: Any) -> None:
        state.invocations.append(
            {
                "FunctionName": urllib.parse.unquote(params["url_path"].split("/")[3]),
                "InvocationType": params["headers"]["X-Amz-Invocation-Type"],
                "Payload": params["body"],
            }
        )

    common_aws.client("lambda").meta.events.register("before-call.lambda.Invoke", capture)
    yield state
    moto_config(aws, {"lambda": {"use_docker": True}})
    bot.settings.cache_clear()
    common_secrets.clear()


@functools.cache
def any_image(endpoint: str) -> str:
    """One of moto's built-in AMIs; they survive resets, and listing them costs seconds, so once per session."""
    image_id: str = client("ec2", endpoint).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return image_id


def workstation(endpoint: str, owner: str, instance_type: str, *, running: bool = True) -> str:
    ec2 = client("ec2", endpoint)
    tags = {"Owner": owner, "mlbase:managed": "true", "mlbase:ami-version": "driver570-cuda12.8-v1"}
    instance_id: str = ec2.run_instances(
        ImageId=any_image(endpoint),
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"][0]["InstanceId"]
    if not running:
        ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id


def described(endpoint: str, instance_id: str) -> dict[str, Any]:
    instance: dict[str, Any] = client("ec2", endpoint).describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ][0]
    return instance


def no_capacity_for(times: int) -> dict[str, int]:
    """Make the handler's EC2 client answer the next `times` StartInstances calls with InsufficientInstanceCapacity,
    exactly as botocore would parse AWS's error; later calls go through to moto."""
    calls = {"refused": 0}

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if calls["refused"] >= times:
            return None
        calls["refused"] += 1
        error = {
            "Code": "InsufficientInstanceCapacity",
            "Message": "We currently do not have sufficient capacity in the Availability Zone you requested.",
        }
        return AWSResponse("https://ec2.example", 500, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }

    common_aws.client("ec2").meta.events.register("before-call.ec2.StartInstances", refuse)
    return calls


def test_forged_signature_gets_401_and_does_nothing(chatops: Bot) -> None:
    response = chatops.post("stop alice", "UADMIN", secret="not-the-secret")
    assert (response["statusCode"], response["body"]) == (401, "invalid request")
    assert chatops.invocations == []


def test_stale_timestamp_gets_401(chatops: Bot) -> None:
    response = chatops.post("list", "UALICE", age=6 * 60)
    assert response["statusCode"] == 401
    assert chatops.invocations == []


def test_tampered_body_gets_401(chatops: Bot) -> None:
    event = chatops.event("status alice", "UBOB")
    event["body"] = event["body"].replace("status", "stop")
    assert bot.handler(event, chatops.context)["statusCode"] == 401


def test_base64_body_is_verified_on_the_decoded_bytes(chatops: Bot) -> None:
    response = chatops.post("list", "UALICE", encode=True)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["text"] == "Working on `/gpu list`…"
    assert len(chatops.invocations) == 1


def test_base64_body_that_is_not_utf8_gets_401(chatops: Bot) -> None:
    event = chatops.event("list", "UALICE")
    event.update(body=base64.b64encode(b"text=\xff").decode(), isBase64Encoded=True)
    assert bot.handler(event, chatops.context)["statusCode"] == 401


def test_undecodable_base64_body_gets_400(chatops: Bot) -> None:
    event = chatops.event("list", "UALICE")
    event.update(body="***", isBase64Encoded=True)
    assert bot.handler(event, chatops.context)["statusCode"] == 400


def test_unknown_command_answers_usage_privately(chatops: Bot) -> None:
    response = chatops.post("reboot alice", "UALICE")
    body = json.loads(response["body"])
    assert (response["statusCode"], body["response_type"]) == (200, "ephemeral")
    assert body["text"] == f"Unknown command `reboot`.\n\n{USAGE}"
    assert chatops.invocations == []


@pytest.mark.parametrize("text", ["help", ""])
def test_help(chatops: Bot, text: str) -> None:
    assert json.loads(chatops.post(text, "UALICE")["body"])["text"] == USAGE
    assert chatops.invocations == []


def test_wrong_owner_gets_a_polite_refusal(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    body = json.loads(chatops.post("stop alice", "UBOB")["body"])
    assert body == {
        "response_type": "ephemeral",
        "text": "Sorry <@UBOB>, only the owner or an admin can stop <@UALICE>'s instance. "
        "Ask them, or an admin, if it needs to stop.",
    }
    assert chatops.invocations == []
    assert described(chatops.endpoint, alice)["State"]["Name"] == "running"


def test_job_checks_permission_again(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    result = bot.handler(chatops.job("stop alice", "UBOB"), chatops.context)
    assert result["ok"] is False
    assert result["text"].startswith("Sorry <@UBOB>, only the owner or an admin can stop")
    assert described(chatops.endpoint, alice)["State"]["Name"] == "running"


def test_a_replayed_request_gets_401_and_does_nothing(chatops: Bot) -> None:
    event = chatops.event("list", "UALICE")
    assert bot.handler(event, chatops.context)["statusCode"] == 200
    replay = bot.handler(json.loads(json.dumps(event)), chatops.context)
    assert (replay["statusCode"], replay["body"]) == (401, "invalid request")
    assert len(chatops.invocations) == 1  # only the first one was handed on


def test_the_seen_signature_expires_after_its_window(chatops: Bot) -> None:
    event = chatops.event("list", "UALICE")
    bot.handler(event, chatops.context)
    items = client("dynamodb", chatops.endpoint).scan(TableName="seen-signatures")["Items"]
    [seen] = [i for i in items if i["key"]["S"].startswith("request#")]
    signature = event["headers"]["x-slack-signature"]
    assert seen["key"]["S"] == f"request#{signature}"
    assert int(seen["expires_at"]["N"]) == int(event["headers"]["x-slack-request-timestamp"]) + 300 + 60


# Jobs that must be refused when the job function is invoked directly: (id, payload maker, reason).
FORGED_JOBS: list[tuple[str, Any, str]] = [
    (
        "decoded-command-with-an-admin-id",
        lambda b: {"mlbase_chatops": {"command": {"verb": "stop", "name": "yuki"}, "user_id": "UADMIN"}},
        "not a signed Slack request",
    ),
    ("signed-with-another-secret", lambda b: b.job("stop alice", "UADMIN", secret="guess"), "signature mismatch"),
    (
        "admin-id-swapped-into-a-signed-body",
        lambda b: _edited(b.job("stop alice", "UBOB"), "user_id=UBOB", "user_id=UADMIN"),
        "signature mismatch",
    ),
    (
        "older-than-a-job-may-be",
        lambda b: b.job("stop alice", "UADMIN", age=JOB_MAX_AGE_SECONDS + 5),
        "stale or future timestamp",
    ),
    ("not-a-mapping", lambda b: {"mlbase_chatops": "stop alice"}, "not a signed Slack request"),
]


def _edited(job: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    job["mlbase_chatops"]["body"] = job["mlbase_chatops"]["body"].replace(old, new)
    return job


@pytest.mark.parametrize(("make", "reason"), [c[1:] for c in FORGED_JOBS], ids=[c[0] for c in FORGED_JOBS])
def test_a_forged_job_is_refused_and_nothing_is_done(chatops: Bot, make: Any, reason: str) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    result = bot.handler(make(chatops), chatops.context)
    assert result == {"ok": False, "refused": reason}
    assert described(chatops.endpoint, alice)["State"]["Name"] == "running"
    assert chatops.slack.requests == []  # not even the job's response_url hears of it


def test_a_job_runs_once_only(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    job = chatops.job("stop alice", "UALICE")
    assert bot.handler(job, chatops.context)["ok"] is True
    client("ec2", chatops.endpoint).start_instances(InstanceIds=[alice])
    assert bot.handler(job, chatops.context) == {"ok": False, "refused": "signature already seen"}
    assert described(chatops.endpoint, alice)["State"]["Name"] in {"pending", "running"}


def test_a_job_waiting_in_the_queue_is_still_accepted(chatops: Bot) -> None:
    workstation(chatops.endpoint, "alice", "g5.xlarge")
    result = bot.handler(chatops.job("status alice", "UALICE", age=9 * 60), chatops.context)
    assert result["ok"] is True


def test_a_failed_job_tells_the_user_and_is_raised_for_the_failure_queue(chatops: Bot) -> None:
    workstation(chatops.endpoint, "alice", "g5.xlarge")

    def broken(**_: Any) -> None:
        raise RuntimeError("EC2 client blew up")

    common_aws.client("ec2").meta.events.register("before-call.ec2.DescribeInstances", broken)
    with pytest.raises(RuntimeError, match="EC2 client blew up"):
        chatops.command("stop alice", "UALICE")
    assert chatops.replies() == [
        "Sorry, `/gpu stop alice` failed unexpectedly; it may be half done. The platform team has been alerted;"
        " check with `/gpu status` before trying again."
    ]
    assert chatops.channel() == []


def test_the_bot_needs_the_job_function(chatops: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLBASE_JOBS_FUNCTION")
    bot.settings.cache_clear()
    with pytest.raises(ValueError, match="MLBASE_JOBS_FUNCTION must be set on the bot"):
        chatops.post("list", "UALICE")


def test_list(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    ack, result = chatops.command("list", "UBOB")
    assert ack == "Working on `/gpu list`…"
    assert result["text"] == f"• *alice*: running, g5.xlarge (`{alice}`)\n• *bob*: no instance"
    assert chatops.replies() == [result["text"]]
    assert chatops.channel() == []  # looking is not an action


def test_status(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    _, result = chatops.command("status alice", "UBOB")
    assert result["text"].startswith(f"*alice*: running\n• instance `{alice}`, g5.xlarge\n")
    assert "• AMI version driver570-cuda12.8-v1" in result["text"]
    assert "• keep-until: not set" in result["text"]


def test_start(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge", running=False)
    ack, result = chatops.command("start", "UALICE")
    assert ack == "Working on `/gpu start alice`…"
    assert result == {"ok": True, "text": f"Starting *alice*'s instance `{alice}` as g5.xlarge."}
    assert described(chatops.endpoint, alice)["State"]["Name"] in {"pending", "running"}
    assert chatops.replies() == [result["text"]]
    assert chatops.channel() == [f"<@UALICE> ran `/gpu start alice`: {result['text']}"]


def test_start_when_already_running(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    _, result = chatops.command("start alice", "UALICE")
    assert result["text"] == f"*alice*'s instance `{alice}` is already running."


def test_stop_by_admin(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge")
    _, result = chatops.command("stop alice", "UADMIN")
    assert result == {"ok": True, "text": f"Stopping *alice*'s instance `{alice}`."}
    assert described(chatops.endpoint, alice)["State"]["Name"] in {"stopping", "stopped"}
    assert chatops.channel() == [f"<@UADMIN> ran `/gpu stop alice`: {result['text']}"]


def test_keep(chatops: Bot) -> None:
    bob = workstation(chatops.endpoint, "bob", "g4dn.xlarge")
    _, result = chatops.command("keep 6", "UBOB")
    tags = {t["Key"]: t["Value"] for t in described(chatops.endpoint, bob)["Tags"]}
    kept = datetime.fromisoformat(tags["keep-until"])
    assert abs(kept - (datetime.now(UTC) + timedelta(hours=6))) < timedelta(minutes=1)
    assert (
        result["text"] == f"*bob*'s instance `{bob}` is kept until {tags['keep-until']}; idle checks will not stop it."
    )
    assert chatops.channel() == [f"<@UBOB> ran `/gpu keep bob 6`: {result['text']}"]


def test_action_on_a_missing_instance(chatops: Bot) -> None:
    _, result = chatops.command("stop bob", "UBOB")
    assert result == {"ok": False, "text": "*bob* has no instance."}


def test_capacity_error_falls_back_to_the_next_type(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge", running=False)
    calls = no_capacity_for(1)
    _, result = chatops.command("start alice", "UALICE")
    assert calls["refused"] == 1
    assert result == {
        "ok": True,
        "text": f"Starting *alice*'s instance `{alice}` as g4dn.xlarge (no capacity for g5.xlarge, so it runs as "
        "g4dn.xlarge).",
    }
    instance = described(chatops.endpoint, alice)
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("g4dn.xlarge", "running")


def test_capacity_error_with_every_type_exhausted_keeps_the_preferred_type(chatops: Bot) -> None:
    alice = workstation(chatops.endpoint, "alice", "g5.xlarge", running=False)
    no_capacity_for(2)
    _, result = chatops.command("start alice", "UALICE")
    assert result == {
        "ok": False,
        "text": f"AWS has no capacity for *alice*'s instance `{alice}` right now (InsufficientInstanceCapacity). "
        "Tried g5.xlarge, g4dn.xlarge. Try again in a few minutes.",
    }
    instance = described(chatops.endpoint, alice)
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("g5.xlarge", "stopped")
    assert chatops.channel() == [f"<@UALICE> ran `/gpu start alice`: {result['text']}"]


def test_capacity_error_without_fallbacks_says_so(chatops: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLBASE_FALLBACK_INSTANCE_TYPES", "")
    bot.settings.cache_clear()
    bob = workstation(chatops.endpoint, "bob", "g4dn.xlarge", running=False)
    no_capacity_for(1)
    _, result = chatops.command("start", "UBOB")
    assert result["ok"] is False
    assert result["text"].endswith("No fallback instance types are configured for it. Try again in a few minutes.")
    assert described(chatops.endpoint, bob)["State"]["Name"] == "stopped"


def test_failed_hand_off_says_nothing_was_done(chatops: Bot) -> None:
    def throttled(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}
        return AWSResponse("https://lambda.example", 429, {}, None), {"Error": error, "ResponseMetadata": {}}

    common_aws.client("lambda").meta.events.register("before-call.lambda.Invoke", throttled)
    body = json.loads(chatops.post("list", "UALICE")["body"])
    assert body["text"] == "Sorry, `/gpu list` could not be queued just now; nothing was done. Try again."
