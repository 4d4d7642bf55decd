"""lambdas.common.slack against a local Slack HTTP server: payloads, retries, Retry-After, refusals."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager
from typing import Any

import pytest

from lambdas.common import slack
from lambdas.common.slack import RetryPolicy, SlackError, SlackTarget, post_message
from tests.conftest import REGION, LoopbackHandler, SlackServer, client, loopback_server

FAST = RetryPolicy(attempts=3, base_delay=0.5, max_delay=2.0, timeout=5)


def test_webhook_post_sends_text_and_blocks(slack_server: SlackServer) -> None:
    slack_server.responses.append((200, b"ok"))
    target = SlackTarget(webhook_url=f"{slack_server.url}/services/T/B/x")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]

    answer = post_message(target, text="hi", blocks=blocks, retry=FAST)

    assert answer == {"ok": True}
    [request] = slack_server.requests
    assert request.method == "POST"
    assert request.path == "/services/T/B/x"
    assert request.headers["Content-Type"].replace(" ", "") == "application/json;charset=utf-8"
    assert "Authorization" not in request.headers
    assert request.json() == {"text": "hi", "blocks": blocks}


def test_bot_token_post_uses_chat_post_message_with_bearer(slack_server: SlackServer) -> None:
    slack_server.responses.append((200, b'{"ok": true, "ts": "1700000000.000100", "channel": "C1"}'))
    target = SlackTarget(bot_token="xoxb-test", channel="C1")

    answer = post_message(target, text="hello", thread_ts="1699.1", api_base=slack_server.url, retry=FAST)

    assert answer["ts"] == "1700000000.000100"
    [request] = slack_server.requests
    assert request.path == "/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-test"
    assert request.json() == {"text": "hello", "thread_ts": "1699.1", "channel": "C1"}


def test_channel_argument_overrides_bot_default(slack_server: SlackServer) -> None:
    post_message(SlackTarget(bot_token="xoxb-test", channel="C1"), text="x", channel="C2", api_base=slack_server.url)
    assert slack_server.requests[0].json()["channel"] == "C2"


def test_rate_limit_without_retry_after_waits_a_second_then_succeeds(
    slack_server: SlackServer, waits: list[float]
) -> None:
    slack_server.responses.extend([(429, b"rate_limited"), (200, b"ok")])
    # The local server sends no Retry-After: slack_sdk then waits 1 s (plus jitter); the header path is below.
    post_message(SlackTarget(webhook_url=slack_server.url), text="x", retry=FAST)
    assert len(slack_server.requests) == 2
    assert waits == [1.0]


def scripted_server(answers: list[tuple[int, dict[str, str], bytes]], paths: list[str]) -> AbstractContextManager[str]:
    """A one-off loopback server that serves `answers` in order (with their headers) and records request paths."""

    class Handler(LoopbackHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server names)
            self.body()
            paths.append(self.path)
            status, headers, body = answers.pop(0)
            self.reply(status, body, headers)

    return loopback_server(Handler)


def post_to(url: str, kind: str) -> dict[str, Any]:
    """Post through the webhook client or through the Web API client, both pointed at `url`."""
    if kind == "webhook":
        return post_message(SlackTarget(webhook_url=f"{url}/hook"), text="x", retry=FAST)
    return post_message(SlackTarget(bot_token="xoxb-t", channel="C1"), text="x", api_base=url, retry=FAST)


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_retry_after_header_over_http(kind: str, waits: list[float]) -> None:
    """A real 429 with a Retry-After header, served by a one-off handler on loopback."""
    paths: list[str] = []
    with scripted_server([(429, {"Retry-After": "2"}, b""), (200, {}, b'{"ok": true}')], paths) as url:
        assert post_to(url, kind) == {"ok": True}
    assert waits == [2.0]
    assert len(paths) == 2


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_retry_after_beyond_max_delay_is_left_to_lambda(kind: str, waits: list[float]) -> None:
    """Slack asks for a longer wait than the function is sized for: raised at once, for Lambda's own retry."""
    paths: list[str] = []
    with (
        scripted_server([(429, {"Retry-After": "120"}, b"rate_limited")], paths) as url,
        pytest.raises(SlackError) as caught,
    ):
        post_to(url, kind)
    assert (caught.value.status, caught.value.retryable) == (429, True)
    assert waits == []
    assert len(paths) == 1


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_server_error_is_retried_with_backoff_then_succeeds(kind: str, waits: list[float]) -> None:
    paths: list[str] = []
    answers: list[tuple[int, dict[str, str], bytes]] = [(503, {}, b"unavailable"), (500, {}, b"oops")]
    with scripted_server([*answers, (200, {}, b'{"ok": true}')], paths) as url:
        assert post_to(url, kind) == {"ok": True}
    assert waits == [0.5, 1.0]
    assert paths == (["/hook"] if kind == "webhook" else ["/chat.postMessage"]) * 3


def test_server_errors_exhaust_attempts_and_raise(slack_server: SlackServer, waits: list[float]) -> None:
    slack_server.responses.extend([(500, b"oops")] * 3)
    with pytest.raises(SlackError) as caught:
        post_message(SlackTarget(webhook_url=slack_server.url), text="x", retry=FAST)
    assert caught.value.retryable is True
    assert caught.value.status == 500
    assert caught.value.error == "oops"
    assert len(slack_server.requests) == 3
    assert waits == [0.5, 1.0]


def test_rejected_payload_raises_without_retry(slack_server: SlackServer, waits: list[float]) -> None:
    slack_server.responses.append((400, b"invalid_payload"))
    with pytest.raises(SlackError, match=r"slack error: invalid_payload \(HTTP 400\)") as caught:
        post_message(SlackTarget(webhook_url=slack_server.url), text="x", retry=FAST)
    assert caught.value.retryable is False
    assert len(slack_server.requests) == 1


def test_web_api_ok_false_raises_without_retry(slack_server: SlackServer) -> None:
    slack_server.responses.append((200, b'{"ok": false, "error": "channel_not_found"}'))
    with pytest.raises(SlackError, match="channel_not_found"):
        post_message(SlackTarget(bot_token="xoxb-t", channel="C9"), text="x", api_base=slack_server.url, retry=FAST)
    assert len(slack_server.requests) == 1


def test_web_api_answer_that_is_not_json_raises_slack_error(slack_server: SlackServer) -> None:
    # slack_sdk raises a bare ValueError for a body that starts like JSON and is not; callers only know SlackError.
    slack_server.responses.append((200, b'{"ok": tru'))
    with pytest.raises(SlackError, match="invalid_response") as caught:
        post_message(SlackTarget(bot_token="xoxb-t", channel="C9"), text="x", api_base=slack_server.url, retry=FAST)
    assert caught.value.retryable is True


def test_web_api_ratelimited_error_is_retried(slack_server: SlackServer, waits: list[float]) -> None:
    slack_server.responses.extend([(200, b'{"ok": false, "error": "ratelimited"}'), (200, b'{"ok": true}')])
    target = SlackTarget(bot_token="xoxb-t", channel="C9")
    assert post_message(target, text="x", api_base=slack_server.url, retry=FAST)["ok"] is True
    assert len(slack_server.requests) == 2


def test_unreachable_server_is_retried_then_raised(waits: list[float]) -> None:
    # Port 9 on loopback refuses connections: a network failure without leaving the machine.
    with pytest.raises(SlackError, match="network") as caught:
        post_message(SlackTarget(webhook_url="http://127.0.0.1:9/x"), text="x", retry=FAST)
    assert caught.value.retryable is True
    assert len(waits) == 2


def test_webhook_url_never_reaches_the_logs(waits: list[float], caplog: pytest.LogCaptureFixture) -> None:
    """slack_sdk logs the URL it retries at INFO; a webhook's URL is its credential."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SlackError):
        post_message(SlackTarget(webhook_url="http://127.0.0.1:9/services/T/B/secret"), text="x", retry=FAST)
    assert caplog.records
    assert "secret" not in caplog.text


@pytest.mark.parametrize(
    "url", ["http://hooks.slack.com/services/x", "file:///etc/passwd", "ftp://127.0.0.1/x", "https:///nohost"]
)
def test_refuses_non_https_urls(url: str) -> None:
    with pytest.raises(ValueError, match="Slack URLs must be https"):
        post_message(SlackTarget(webhook_url=url), text="x")


def test_long_text_is_truncated(slack_server: SlackServer) -> None:
    post_message(SlackTarget(webhook_url=slack_server.url), text="a" * 50_000)
    sent = slack_server.requests[0].json()["text"]
    assert len(sent) == slack.MAX_TEXT_CHARS
    assert sent.endswith("…")


def test_target_repr_hides_credentials() -> None:
    assert "xoxb" not in repr(SlackTarget(bot_token="xoxb-secret", channel="C1"))
    assert "hooks" not in repr(SlackTarget(webhook_url="https://hooks.slack.com/services/secret"))


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ({"webhook_url": "https://hooks.slack.com/x"}, SlackTarget(webhook_url="https://hooks.slack.com/x")),
        ({"bot_token": "xoxb-1", "channel": "C1"}, SlackTarget(bot_token="xoxb-1", channel="C1")),
        (
            {"webhook_url": "https://hooks.slack.com/x", "bot_token": "xoxb-1", "channel": "C1"},
            SlackTarget(webhook_url="https://hooks.slack.com/x", channel="C1"),
        ),
    ],
)
def test_target_from_secret(secret: dict[str, str], expected: SlackTarget) -> None:
    assert slack.target_from_secret(secret) == expected


@pytest.mark.parametrize("secret", [{}, {"bot_token": "xoxb-1"}, {"channel": "C1"}, {"webhook_url": ""}])
def test_target_from_incomplete_secret_is_refused(secret: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="the Slack secret must hold"):
        slack.target_from_secret(secret)


def test_load_target_reads_secrets_manager_once(aws: str) -> None:
    sm = client("secretsmanager", aws)
    arn = sm.create_secret(Name="slack", SecretString=json.dumps({"bot_token": "xoxb-1", "channel": "C1"}))["ARN"]
    assert slack.load_target(arn) == SlackTarget(bot_token="xoxb-1", channel="C1")
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"webhook_url": "https://hooks.slack.com/new"}))
    # Cached for the container's life: a rotation is picked up by the next cold start.
    assert slack.load_target(arn).bot_token == "xoxb-1"
    assert REGION in arn
