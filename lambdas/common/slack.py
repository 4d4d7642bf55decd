"""Posting to Slack over plain HTTPS (urllib), shared by the notifier, the idle monitor and the chatops bot.

Two delivery targets, both read from one Secrets Manager secret (never from the template):

- ``{"webhook_url": "https://hooks.slack.com/services/..."}``: an incoming webhook, bound to one channel.
- ``{"bot_token": "xoxb-...", "channel": "C0123456789"}``: a bot token; messages go through ``chat.postMessage``.

Typical use::

    from lambdas.common.slack import load_target, post_message

    target = load_target(os.environ["MLBASE_SLACK_SECRET_ARN"])  # cached for the container's life
    post_message(target, text="GPU instance i-0abc idle for 2 h", blocks=[...])

Failures never pass silently. Rate limits (HTTP 429, honouring ``Retry-After``), 5xx answers and network errors are
retried with bounded exponential backoff; when the attempts run out, or Slack rejects the message outright
(``invalid_payload``, ``channel_not_found``, a revoked token), :class:`SlackError` is raised so that the Lambda's
asynchronous retries and its on-failure destination (a DLQ with an alarm) take over.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_API_BASE = "https://slack.com/api"
# Slack truncates beyond 40k characters and rejects bigger bodies; cut early so the message still arrives.
MAX_TEXT_CHARS = 39_000
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SlackError(Exception):
    """Slack did not accept the message. `error` is Slack's short reason (or the HTTP status); `retryable` says
    whether the failure was transient (rate limit, 5xx, network) and the attempts simply ran out."""

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
    """How hard to try. The worst-case total wait is bounded by ``(attempts - 1) * max_delay`` plus the HTTP
    timeouts, which the caller's Lambda timeout must exceed (defaults: at most 3 * 8 s + 4 * 10 s = 64 s)."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 8.0
    timeout: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): Slack's Retry-After when given,
        otherwise exponential backoff; never more than `max_delay`."""
        wanted = retry_after if retry_after is not None else self.base_delay * 2 ** (attempt - 1)
        return max(0.0, min(wanted, self.max_delay))


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
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Post one message and return Slack's answer (``{"ok": True, ...}``; a webhook answers ``{"ok": True}``).

    `text` is always sent: it is the notification text and the fallback when `blocks` cannot be shown.
    `channel` overrides the target's channel (bot tokens only; a webhook is bound to its channel).
    Raises :class:`SlackError` once Slack has refused the message or the retries are exhausted.
    """
    payload: dict[str, Any] = {"text": truncate(text)}
    if blocks:
        payload["blocks"] = list(blocks)
    if thread_ts:
        payload["thread_ts"] = thread_ts
    if target.webhook_url:
        return post_webhook(target.webhook_url, payload, retry=retry, sleep=sleep)
    assert target.bot_token is not None  # guaranteed by SlackTarget.__post_init__
    payload["channel"] = channel or target.channel
    return call_api("chat.postMessage", target.bot_token, payload, api_base=api_base, retry=retry, sleep=sleep)


def post_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST a JSON payload to an incoming webhook or an interaction ``response_url``.

    Webhooks answer plain text (``ok`` or an error such as ``invalid_payload``) rather than JSON.
    """
    return _send(url, payload, headers={}, retry=retry or RetryPolicy(), sleep=sleep)


def call_api(
    method: str,
    token: str,
    payload: Mapping[str, Any],
    *,
    api_base: str = DEFAULT_API_BASE,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Call a Web API method (``chat.postMessage``, ``chat.update``, ``views.open``...) with a JSON body.

    The Web API answers HTTP 200 with ``{"ok": false, "error": ...}`` on failure; that is raised as SlackError
    (retried only when the error is ``ratelimited``).
    """
    url = f"{api_base.rstrip('/')}/{method}"
    headers = {"Authorization": f"Bearer {token}"}
    return _send(url, payload, headers=headers, retry=retry or RetryPolicy(), sleep=sleep)


def truncate(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Cut `text` to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _send(
    url: str,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    retry: RetryPolicy,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    _check_url(url)
    body = json.dumps(payload).encode()
    last: SlackError | None = None
    for attempt in range(1, max(1, retry.attempts) + 1):
        try:
            return _send_once(url, body, headers, retry.timeout)
        except _TransientError as exc:
            last = SlackError(exc.error, status=exc.status, retryable=True)
            if attempt < retry.attempts:
                sleep(retry.delay(attempt, exc.retry_after))
    assert last is not None
    raise last


class _TransientError(Exception):
    def __init__(self, error: str, status: int | None, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after


def _send_once(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - scheme checked by _check_url
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        reason = _error_reason(raw) or f"http_{exc.code}"
        if exc.code == 429:
            raise _TransientError("ratelimited", exc.code, _retry_after(exc.headers.get("Retry-After"))) from exc
        if exc.code >= 500:
            raise _TransientError(reason, exc.code) from exc
        raise SlackError(reason, status=exc.code) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _TransientError(f"network: {getattr(exc, 'reason', exc)}", None) from exc
    answer = _parse_answer(raw)
    if answer.get("ok") is not True:
        error = str(answer.get("error") or "unknown_error")
        if error == "ratelimited":
            raise _TransientError(error, status)
        raise SlackError(error, status=status)
    return answer


def _parse_answer(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace").strip()
    if text == "ok":  # incoming webhooks answer plain text
        return {"ok": True}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"ok": False, "error": text[:200] or "empty_response"}
    return parsed if isinstance(parsed, dict) else {"ok": False, "error": "unexpected_response"}


def _error_reason(raw: bytes) -> str | None:
    answer = _parse_answer(raw)
    error = answer.get("error")
    return str(error) if error else None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


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
