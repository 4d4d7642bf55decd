"""ECS task scale-in protection through the ECS agent (`$ECS_AGENT_URI`): on while holding messages, off when idle."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

log = logging.getLogger(__name__)


class ScaleInProtection:
    """Sets or clears protection only on a change, and renews it before it lapses; a no-op without an agent."""

    def __init__(self, agent_uri: str | None, minutes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.minutes = minutes
        self._clock = clock
        self._lock = threading.Lock()
        self._enabled = False
        self._set_at = 0.0

    @property
    def enabled(self) -> bool:
        return self._enabled

    def update(self, busy: bool) -> None:
        with self._lock:
            renew = busy and self._enabled and self._clock() - self._set_at > self.minutes * 30
            if busy == self._enabled and not renew:
                return
            if self._put(busy):
                self._enabled = busy
                self._set_at = self._clock()

    def _put(self, enabled: bool) -> bool:
        if self.agent_uri is None:
            return True
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.minutes
        request = urllib.request.Request(  # noqa: S310 (the URL comes from the ECS agent)
            f"{self.agent_uri}/task-protection/v1/state",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
                answer = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # Protection is an optimisation: without it a scale-in may interrupt us, and SIGTERM handling still
            # releases the messages, so a failure is logged and retried on the next change, never fatal.
            log.warning("scale-in protection update failed", extra={"enabled": enabled, "reason": str(exc)})
            return False
        if isinstance(answer, dict) and answer.get("failure"):
            log.warning("scale-in protection refused", extra={"enabled": enabled, "reason": answer["failure"]})
            return False
        log.info("scale-in protection", extra={"enabled": enabled})
        return True
