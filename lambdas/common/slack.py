"""Posting to Slack with slack_sdk, shared by the notifier, the idle monitor and the chatops bot.

Two delivery targets, both read from one Secrets Manager secret (never from the template):

- ``{"webhook_url": "https://hooks.slack.com/services/..."}``: an incoming webhook (``WebhookClient``).
- ``{"bot_token": "xoxb-...", "channel": "C0123456789"}``: a bot token, through ``WebClient.chat_postMessage``.

Typical use::

    from lambdas.common.slack import load_target, post_message

    target = load_target(os.environ["MLBASE_SLACK_SECRET_ARN"])  # cached for SECRET_MAX_AGE (picks up rotation)
    post_message(target, text="GPU instance i-0abc idle for 2 h", blocks=[...])

Failures never pass silently. slack_sdk's retry handlers retry rate limits (HTTP 429, waiting Retry-After), HTTP
500/503 and network errors a bounded number of times; when the attempts run out, or Slack rejects the message
outright (``invalid_payload``, ``channel_not_found``, a revoked token), :class:`SlackError` is raised so that the
Lambda's asynchronous retries and its on-failure destination (a DLQ with an alarm) take over.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    HttpResponse,
    RateLimitErrorRetryHandler,
    RetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

DEFAULT_API_BASE = "https://slack.com/api"
# Slack truncates beyond 40k characters and rejects bigger bodies; cut early so the message still arrives.
MAX_TEXT_CHARS = 39_000
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# slack_sdk logs the request URL (for a webhook, the credential itself) at INFO and DEBUG; its warnings still show.
_SDK_LOG = logging.getLogger(f"{__name__}.sdk")
_SDK_LOG.setLevel(logging.WARNING)


class SlackError(Exception):
    """Slack did not accept the message. `error` is Slack's short reason (or the HTTP status); `retryable` says
    whether the failure was transient (rate limit, 5xx, network), so that a later try may succeed."""

    def __init__(self, error: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(f"slack error: {error}" + (f" (HTTP {status})" if status is not None else ""))
        self.error = error
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class SlackTarget:
    """Where messages go: an incoming webhook URL, or a bot token with a default channel."""

    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None

    def __post_init__(self) -> None:
        if self.webhook_url is None and not (self.bot_token and self.channel):
            raise ValueError("a Slack target needs webhook_url, or bot_token and channel")

    def __repr__(self) -> str:
        # Credentials must never reach logs, even through an exception's repr.
        kind = "webhook" if self.webhook_url else "bot"
        return f"SlackTarget({kind}, channel={self.channel!r})"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try, as slack_sdk retry handlers: `attempts` calls in all, exponential backoff from `base_delay`
    (lower when needed so that no wait exceeds `max_delay`), plus slack_sdk's jitter of up to 1 s. A Retry-After
    beyond `max_delay` is not waited for here: the SlackError hands it to Lambda's asynchronous retry, minutes later.
    The caller's Lambda timeout must exceed ``attempts * timeout + (attempts - 1) * (max_delay + 1 s)``."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 8.0
    timeout: int = 10

    def handlers(self) -> list[RetryHandler]:
        retries = max(0, self.attempts - 1)  # the handlers share one attempt counter, so this bounds them all
        # slack_sdk waits factor * 2**n (plus jitter) before retry n + 1: the last of those waits must fit max_delay.
        backoff = BackoffRetryIntervalCalculator(min(self.base_delay, self.max_delay / 2 ** max(0, retries - 1)))
        return [
            _RateLimitRetry(retries, self.max_delay),
            ServerErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
            # Read timeouts too (TimeoutError): urllib wraps only connection failures in URLError.
            ConnectionErrorRetryHandler(retries, backoff, error_types=[URLError, ConnectionError, TimeoutError]),
        ]


class _RateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's rate-limit handler (it waits Retry-After, 1 s without one, plus jitter) for HTTP 429 and the Web
    API's ``{"ok": false, "error": "ratelimited"}``, retrying only when that wait fits within `max_wait`."""

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, response: HttpResponse | None = None, **_: Any) -> bool:
        if response is None:
            return False
        limited = response.status_code == 429 or (response.body or {}).get("error") == "ratelimited"
        retry_after = next((v[0] for k, v in response.headers.items() if k.lower() == "retry-after"), "1")
        # Retry-After is whole seconds; slack_sdk cannot read anything else, so anything else is not retried here.
        return limited and (int(retry_after) if retry_after.isdigit() else math.inf) <= self.max_wait


def target_from_secret(secret: Mapping[str, Any]) -> SlackTarget:
    """Build a target from the secret's parsed JSON; a webhook wins when both forms are present."""
    webhook = secret.get("webhook_url")
    if isinstance(webhook, str) and webhook:
        return SlackTarget(webhook_url=webhook, channel=_optional_str(secret.get("channel")))
    token, channel = secret.get("bot_token"), secret.get("channel")
    if isinstance(token, str) and token and isinstance(channel, str) and channel:
        return SlackTarget(bot_token=token, channel=channel)
    raise ValueError('the Slack secret must hold {"webhook_url": ...} or {"bot_token": ..., "channel": ...}')


def load_target(secret_arn: str) -> SlackTarget:
    """Read the Slack secret (cached for lambdas.common.secrets.SECRET_MAX_AGE) and parse it."""
    from lambdas.common.secrets import secret_string  # imported lazily: posting alone must not need boto3

    parsed = json.loads(secret_string(secret_arn))
    if not isinstance(parsed, dict):
        raise ValueError("the Slack secret must be a JSON object")
    return target_from_secret(parsed)


def post_message(
    target: SlackTarget,
    *,
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None = None,
    channel: str | None = None,
    thread_ts: str | None = None,
    api_base: str = DEFAULT_API_BASE,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Post one message and return Slack's answer (``{"ok": True, ...}``; a webhook answers ``{"ok": True}``).

    `text` is always sent: it is the notification text and the fallback when `blocks` cannot be shown.
    `channel` overrides the target's channel (bot tokens only; a webhook is bound to its channel).
    Raises :class:`SlackError` once Slack has refused the message or the retries are exhausted.
    """
    block_list = [dict(block) for block in blocks] if blocks else None
    if target.webhook_url:
        payload = {"text": truncate(text), "blocks": block_list, "thread_ts": thread_ts}
        return post_webhook(target.webhook_url, payload, retry=retry)
    assert target.bot_token is not None  # guaranteed by SlackTarget.__post_init__
    assert target.channel is not None
    _check_url(api_base)
    client = WebClient(token=target.bot_token, base_url=api_base, **_options(retry))
    with _failures():
        response = client.chat_postMessage(
            channel=channel or target.channel, text=truncate(text), blocks=block_list, thread_ts=thread_ts
        )
    return response.data if isinstance(response.data, dict) else {"ok": True}


def post_webhook(url: str, payload: Mapping[str, Any], *, retry: RetryPolicy | None = None) -> dict[str, Any]:
    """POST a JSON payload (None values left out) to an incoming webhook or an interaction ``response_url``.

    Webhooks answer plain text (``ok`` or an error such as ``invalid_payload``), a ``response_url`` answers JSON.
    """
    _check_url(url)
    with _failures():
        response = WebhookClient(url, **_options(retry)).send_dict(dict(payload))
    body = response.body.strip()
    answer: dict[str, Any] = {"ok": True} if body == "ok" else {"error": body[:200]}
    if body.startswith("{"):
        with suppress(ValueError):
            answer = json.loads(body)
    if response.status_code == 200 and answer.get("ok") is True:
        return answer
    raise _refused(str(answer.get("error") or f"http_{response.status_code}"), response.status_code)


def truncate(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Cut `text` to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _options(retry: RetryPolicy | None) -> dict[str, Any]:
    policy = retry or RetryPolicy()
    return {"timeout": policy.timeout, "retry_handlers": policy.handlers(), "logger": _SDK_LOG}


@contextmanager
def _failures() -> Iterator[None]:
    """Around one slack_sdk call (its retry handlers run inside it): what still fails becomes SlackError."""
    try:
        yield
    except SlackApiError as exc:
        raise _refused(str(exc.response.get("error") or "unknown_error"), exc.response.status_code) from exc
    except OSError as exc:  # URLError, refused connections, timeouts, once the connection handler gave up
        raise _refused(f"network: {getattr(exc, 'reason', exc)}", None) from exc
    except ValueError as exc:  # an answer that starts like JSON and is not (slack_sdk parses it and lets this out)
        raise _refused("invalid_response", None) from exc


def _refused(error: str, status: int | None) -> SlackError:
    transient = status is None or status == 429 or status >= 500 or error == "ratelimited"
    return SlackError(error, status=status, retryable=transient)


def _check_url(url: str) -> None:
    """Only HTTPS leaves the machine: plain HTTP is allowed to a loopback test server only, so that a token or
    webhook secret is never sent in clear text, and file:// or other schemes are never opened."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return
    raise ValueError(f"refusing to post to {parts.scheme}://{parts.hostname}: Slack URLs must be https")


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
