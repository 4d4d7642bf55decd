"""Slack `/gpu` slash command behind an HTTP API (payload format 2.0), answering within Slack's 3 seconds.

The same code runs as two functions with different permissions:

- **The bot** (HTTP, from API Gateway): the Slack signature is checked on the raw body (base64-decoded when API
  Gateway says so) with the signing secret from Secrets Manager and a 5-minute window, before anything is parsed;
  then the signature is recorded with a conditional put, so a replay of the same signed request gets 401 too.
  `help`, usage errors and refusals are answered directly. Everything that touches EC2 is acknowledged at once with
  an ephemeral message and handed to an asynchronous invocation of the job function (`InvocationType=Event`), the
  lazy-listener pattern of Bolt for Python. The bot itself has no EC2 permissions.
- **The job function** (`{"mlbase_chatops": {...}}`): the payload is the signed Slack request itself (body,
  timestamp, signature), never a decoded command, and it is verified again here (signature, a window that allows
  for Lambda's queue, once only), so a direct invocation with a made-up user or command is refused. It runs the
  command against EC2, answers the caller on the request's `response_url`, and for start/stop/keep posts the outcome
  to the workbench channel. An unexpected failure is told to the caller and then raised: the function makes no
  retries, and Lambda sends the job to its on-failure destination (a queue with an alarm).

Every command is logged with the Slack user, the command and the result. Decisions live in
:mod:`lambdas.chatops.logic`.

Environment variables:
    MLBASE_SIGNING_SECRET_ARN       required; Secrets Manager secret whose string is the Slack app's signing secret
    MLBASE_SEEN_TABLE               required; DynamoDB table of seen signatures (key `key`, TTL attribute `expires_at`)
    MLBASE_JOBS_FUNCTION            the bot only: the job function's ARN
    MLBASE_ROSTER                   JSON list of {"name", "slack_user_id", "instance_type"}: who owns which instance
    MLBASE_ADMIN_SLACK_IDS          comma-separated Slack user IDs allowed to act on any instance
    MLBASE_FALLBACK_INSTANCE_TYPES  JSON {"g5.xlarge": ["g4dn.xlarge"]}: types to try on InsufficientInstanceCapacity;
                                    empty or unset: no retry
    MLBASE_SLACK_SECRET_ARN         optional; Slack target (see lambdas.common.slack) for posting actions to the channel
    MLBASE_KEEP_MAX_HOURS           longest `keep` allowed, in hours (default 168; match the idle monitor's)
    MLBASE_SLACK_API_BASE           optional Slack Web API base URL (a local Slack double in tests)
    MLBASE_ENDPOINT_URL             optional AWS endpoint override (a local AWS double in tests)

IAM, bot: secretsmanager:GetSecretValue on the signing secret; dynamodb:PutItem on the table; lambda:InvokeFunction
on the job function. Job function: secretsmanager:GetSecretValue on both secrets; dynamodb:PutItem on the table;
ec2:DescribeInstances; ec2:StartInstances, ec2:StopInstances, ec2:ModifyInstanceAttribute and ec2:CreateTags (key
`keep-until`) on instances tagged `mlbase:managed=true`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from lambdas.chatops.logic import (
    ACTIONS,
    JOB_MAX_AGE_SECONDS,
    USAGE,
    Command,
    CommandError,
    Seen,
    Settings,
    SignatureProblem,
    Verb,
    ack_text,
    candidate_types,
    check_signature,
    failure_text,
    forget_after,
    instance_details,
    instance_summary,
    keep_until,
    may_run,
    parse_command,
    parse_settings,
    refusal,
    seen_key,
)
from lambdas.common.aws import client
from lambdas.common.secrets import secret_string
from lambdas.common.slack import DEFAULT_API_BASE, SlackError, load_target, post_message, post_webhook

logger = Logger(service="chatops")

LAZY_KEY = "mlbase_chatops"
JOB_KEYS = ("body", "timestamp", "signature")
CAPACITY_ERROR = "InsufficientInstanceCapacity"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The validated environment, read once per container."""
    return parse_settings(os.environ)


def signing_secret(secret_arn: str) -> str:
    """The signing secret, cached (lambdas.common.secrets): the 3-second budget has no room for a fetch per request,
    and a rotated secret must still reach warm containers."""
    return secret_string(secret_arn).strip()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if LAZY_KEY in event:
        return run_job(event[LAZY_KEY])
    return handle_http(event)


def handle_http(event: Mapping[str, Any]) -> dict[str, Any]:
    config = settings()
    if not config.jobs_function:
        raise ValueError("MLBASE_JOBS_FUNCTION must be set on the bot (the job function's ARN)")
    body = raw_body(event)
    if body is None:
        return _plain(400, "bad request body")
    headers = {str(key).lower(): str(value) for key, value in (event.get("headers") or {}).items()}
    timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
    problem = check_signature(signing_secret(config.signing_secret_arn), timestamp, signature, body, time.time())
    if problem is None and timestamp and signature and not first_sighting(config, Seen.REQUEST, signature, timestamp):
        problem = SignatureProblem.REPLAYED
    if problem is not None:
        logger.warning("request refused", extra={"reason": problem.value, "source_ip": _source_ip(event)})
        return _plain(401, "invalid request")

    form = _form(body)
    if form.get("ssl_check") == "1":
        return _plain(200, "")
    caller = form.get("user_id", "")
    text = form.get("text", "")
    try:
        command = parse_command(text, caller, config.roster, config.keep_max_hours)
    except CommandError as error:
        logger.info("bad command", extra={"slack_user": caller, "text": text, "error": str(error)})
        return ephemeral(f"{error}\n\n{USAGE}")
    if command.verb is Verb.HELP:
        return ephemeral(USAGE)
    if not may_run(caller, command, config):
        logger.info("command refused", extra={"slack_user": caller, "command": str(command), "result": "not owner"})
        return ephemeral(refusal(caller, command, config))

    # The job carries the signed request itself: the job function believes nothing it cannot verify.
    job = {"body": body.decode("utf-8"), "timestamp": timestamp, "signature": signature}
    try:
        client("lambda").invoke(
            FunctionName=config.jobs_function,
            InvocationType="Event",
            Payload=json.dumps({LAZY_KEY: job}).encode(),
        )
    except ClientError:
        logger.exception("could not hand the command on", extra={"slack_user": caller, "command": str(command)})
        return ephemeral(f"Sorry, `/gpu {command}` could not be queued just now; nothing was done. Try again.")
    logger.info("command accepted", extra={"slack_user": caller, "command": str(command)})
    return ephemeral(ack_text(command))


def first_sighting(config: Settings, kind: Seen, signature: str, timestamp: str) -> bool:
    """Record `signature`; False when it was already recorded (a replay). Only one of two racing puts succeeds."""
    try:
        client("dynamodb").put_item(
            TableName=config.seen_table,
            Item={"key": {"S": seen_key(kind, signature)}, "expires_at": {"N": str(forget_after(timestamp, kind))}},
            ConditionExpression="attribute_not_exists(#key)",
            ExpressionAttributeNames={"#key": "key"},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def raw_body(event: Mapping[str, Any]) -> bytes | None:
    """The body exactly as Slack sent it, which is what the signature covers."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(body).encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Verify the signed request the job carries, do the slow part, tell the caller (and, for actions, the channel)."""
    config = settings()
    body, timestamp, signature = (job.get(key) if isinstance(job, Mapping) else None for key in JOB_KEYS)
    if not (isinstance(body, str) and isinstance(timestamp, str) and isinstance(signature, str)):
        return _refuse_job("not a signed Slack request", None)
    problem = check_signature(
        signing_secret(config.signing_secret_arn),
        timestamp,
        signature,
        body.encode("utf-8"),
        time.time(),
        max_age=JOB_MAX_AGE_SECONDS,
    )
    if problem is None and not first_sighting(config, Seen.JOB, signature, timestamp):
        problem = SignatureProblem.REPLAYED
    if problem is not None:
        return _refuse_job(problem.value, None)
    form = _form(body.encode("utf-8"))
    caller = form.get("user_id", "")
    try:
        command = parse_command(form.get("text", ""), caller, config.roster, config.keep_max_hours)
    except CommandError as error:
        return _refuse_job(f"bad command: {error}", caller)
    response_url = form.get("response_url")
    # Checked again here: the roster or the admins may have changed since the bot accepted the request.
    if not may_run(caller, command, config):
        text, ok = refusal(caller, command, config), False
    else:
        try:
            text, ok = execute(command, config)
        except Exception:
            logger.exception("command failed", extra={"slack_user": caller, "command": str(command)})
            _answer(response_url, failure_text(str(command)), caller)
            raise
    logger.info("command done", extra={"slack_user": caller, "command": str(command), "ok": ok, "result": text})
    _answer(response_url, text, caller)
    if command.verb in ACTIONS and config.slack_secret_arn:
        post_message(
            load_target(config.slack_secret_arn),
            text=f"<@{caller}> ran `/gpu {command}`: {text}",
            api_base=config.slack_api_base or DEFAULT_API_BASE,
        )
    return {"ok": ok, "text": text}


def _refuse_job(reason: str, caller: str | None) -> dict[str, Any]:
    """Nothing is run or posted for a job that fails verification: its response_url is not to be trusted either."""
    logger.warning("job refused", extra={"reason": reason, "slack_user": caller})
    return {"ok": False, "refused": reason}


def _answer(response_url: str | None, text: str, caller: str) -> None:
    if not response_url:
        return
    try:
        post_webhook(response_url, {"response_type": "ephemeral", "text": text})
    except SlackError:
        logger.exception("response_url post failed", extra={"slack_user": caller})


def _form(body: bytes) -> dict[str, str]:
    return {
        key: values[0] for key, values in urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True).items()
    }


def execute(command: Command, config: Settings) -> tuple[str, bool]:
    """Run one command against EC2; AWS refusals become a message rather than a crash."""
    try:
        if command.verb is Verb.LIST:
            return list_instances(config), True
        assert command.name is not None  # parse_command guarantees a name for every other verb
        instance = find_instance(command.name)
        if command.verb is Verb.STATUS:
            return instance_details(command.name, instance), True
        if instance is None:
            return f"*{command.name}* has no instance.", False
        if command.verb is Verb.START:
            return start(command.name, instance, config)
        if command.verb is Verb.STOP:
            return stop(command.name, instance)
        assert command.hours is not None
        return keep(command.name, instance, command.hours)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        logger.exception("EC2 refused", extra={"command": str(command), "code": code})
        return f"AWS refused `/gpu {command}`: {code}: {error.response.get('Error', {}).get('Message', '')}", False


def list_instances(config: Settings) -> str:
    if not config.roster:
        return "The roster is empty."
    return "\n".join(instance_summary(name, find_instance(name)) for name in sorted(config.roster))


def find_instance(name: str) -> dict[str, Any] | None:
    """The managed instance whose Owner tag is `name` (the newest, should a replacement overlap the old one)."""
    paginator = client("ec2").get_paginator("describe_instances")
    found: list[dict[str, Any]] = []
    for page in paginator.paginate(
        Filters=[
            {"Name": "tag:Owner", "Values": [name]},
            {"Name": "tag:mlbase:managed", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
    ):
        for reservation in page["Reservations"]:
            found.extend(reservation["Instances"])
    if not found:
        return None
    return max(found, key=lambda instance: instance["LaunchTime"])


def start(name: str, instance: Mapping[str, Any], config: Settings) -> tuple[str, bool]:
    """Start, walking the fallback types on capacity errors (scenario 6)."""
    instance_id, state = instance["InstanceId"], instance["State"]["Name"]
    if state in ("pending", "running"):
        return f"*{name}*'s instance `{instance_id}` is already {state}.", True
    if state == "stopping":
        return f"*{name}*'s instance `{instance_id}` is still stopping; try again in a minute.", False
    entry = config.roster.get(name)
    current = str(instance["InstanceType"])
    candidates = candidate_types(current, entry.instance_type if entry else None, config.fallback_types)
    ec2 = client("ec2")
    tried: list[str] = []
    for instance_type in candidates:
        if instance_type != current:
            ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": instance_type})
            current = instance_type
        try:
            ec2.start_instances(InstanceIds=[instance_id])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != CAPACITY_ERROR:
                raise
            logger.warning("no capacity", extra={"instance_id": instance_id, "instance_type": instance_type})
            tried.append(instance_type)
            continue
        note = f" (no capacity for {', '.join(tried)}, so it runs as {instance_type})" if tried else ""
        return f"Starting *{name}*'s instance `{instance_id}` as {instance_type}{note}.", True
    # Leave the instance on its preferred type, so the next try does not start on a fallback by surprise.
    if current != candidates[0]:
        ec2.modify_instance_attribute(InstanceId=instance_id, InstanceType={"Value": candidates[0]})
    hint = "No fallback instance types are configured for it." if len(candidates) == 1 else f"Tried {', '.join(tried)}."
    return (
        f"AWS has no capacity for *{name}*'s instance `{instance_id}` right now ({CAPACITY_ERROR}). "
        f"{hint} Try again in a few minutes.",
        False,
    )


def stop(name: str, instance: Mapping[str, Any]) -> tuple[str, bool]:
    instance_id, state = instance["InstanceId"], instance["State"]["Name"]
    if state in ("stopping", "stopped"):
        return f"*{name}*'s instance `{instance_id}` is already {state}.", True
    client("ec2").stop_instances(InstanceIds=[instance_id])
    return f"Stopping *{name}*'s instance `{instance_id}`.", True


def keep(name: str, instance: Mapping[str, Any], hours: float) -> tuple[str, bool]:
    until = keep_until(datetime.now(UTC), hours)
    client("ec2").create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": "keep-until", "Value": until}])
    return f"*{name}*'s instance `{instance['InstanceId']}` is kept until {until}; idle checks will not stop it.", True


def ephemeral(text: str) -> dict[str, Any]:
    """An HTTP answer Slack shows only to the caller."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"response_type": "ephemeral", "text": text}),
    }


def _plain(status: int, text: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": text}


def _source_ip(event: Mapping[str, Any]) -> str | None:
    http = event.get("requestContext", {}).get("http", {})
    ip = http.get("sourceIp") if isinstance(http, dict) else None
    return str(ip) if ip else None
