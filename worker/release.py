"""`wake: sla`: the worker sends its fleet back to zero itself, the moment it sees what the idle alarm waits for.

The idle alarm reads SQS and Container Insights datapoints that reach CloudWatch two or three minutes late, and each
of those minutes bills every host of the fleet. The worker sees the queue at once. After each receive it checks
the rule `cdk_constructs.sla_scaling.WorkerRelease` describes (the simulator replays the same rule):

- empty: a whole long poll returned nothing and the queue reports no message visible, in flight or delayed
  (every photo is classified; one arriving later has its whole SLA ahead and wakes the fleet like any other); or
- caught up: the queue holds at most a batch, the oldest photo of its last receive is young and fewer than
  `slow_per_minute` photos were sent in the last minute (a trickle the fleet keeps up with at a fraction of one
  task's speed: cheaper to gather again than to idle). Once caught up, the tasks receive what arrives, so the photos
  this task received that were sent in the last minute, times the service's running tasks (long polls share the
  queue), estimate the arrival rate the idle alarm reads from NumberOfMessagesSent; a backlog still being drained
  was sent earlier and does not count.

Then it sets the ECS service's desired count and the host group's desired capacity to 0. ECS stops this task
(SIGTERM: the worker finishes its batch) and managed draining lets the host go. Photos still in the queue stay
there for the wake alarm. Every failure here (a throttled call, a missing permission, no task metadata) is
logged and leaves the fleet as it is, so the CloudWatch idle alarm still releases it a few minutes later.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Attribute checks while the worker is not idle: at most one every this many seconds (the queue and the service are
# read through the API; a worker keeping up with a trickle receives every few seconds).
CHECK_INTERVAL_S = 10.0
# After a failed release, wait this long before the next try (the idle alarm is the fallback meanwhile).
RETRY_AFTER_S = 60.0
WINDOW_S = 60.0


@dataclass(frozen=True)
class ReleaseRule:
    """The thresholds the construct computes (`WorkerRelease`) and passes as MLBASE_RELEASE_* variables."""

    host_group: str
    caught_up_messages: int
    max_age_s: int
    slow_per_minute: int
    empty_wait_s: int


@dataclass(frozen=True)
class TaskIdentity:
    cluster: str
    service: str


def task_identity(metadata_uri: str | None, timeout_s: float = 2.0) -> TaskIdentity | None:
    """Cluster and service of this task from the ECS task metadata endpoint v4 (`ServiceName` needs ECS agent
    1.63.1 or later); None, with a warning, when either is missing."""
    if not metadata_uri:
        log.warning("fleet release off: no ECS task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4)")
        return None
    try:
        with urllib.request.urlopen(f"{metadata_uri.rstrip('/')}/task", timeout=timeout_s) as response:  # noqa: S310 (the URL comes from the ECS agent)
            task = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("fleet release off: task metadata unreadable", extra={"reason": str(exc)})
        return None
    cluster, service = task.get("Cluster"), task.get("ServiceName")
    if not cluster or not service:
        log.warning("fleet release off: task metadata names no cluster and service", extra={"task": str(task)[:200]})
        return None
    return TaskIdentity(str(cluster), str(service))


class FleetRelease:
    """Watches what the worker receives and releases the fleet when the rule holds (see the module docstring)."""

    def __init__(
        self,
        rule: ReleaseRule,
        identity: TaskIdentity,
        *,
        queue_url: str,
        sqs: Any,
        ecs: Any,
        autoscaling: Any,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.rule = rule
        self.identity = identity
        self.queue_url = queue_url
        self.sqs, self.ecs, self.autoscaling = sqs, ecs, autoscaling
        self._clock, self._wall = clock, wall
        self._sent: deque[float] = deque()  # SentTimestamp (seconds) of the photos received, the newest last
        self._oldest_sent_s: float | None = None
        self._next_check = -float("inf")
        self.released: str | None = None  # the reason of the last release

    def after_receive(self, messages: list[dict[str, Any]], waited_s: float, busy: bool) -> bool:
        """Called after every receive with what it returned, how long it waited and whether the worker still holds
        messages; True when this call released the fleet. The worker then goes on as before: ECS stops it within
        seconds (SIGTERM), unless a wake raised the count again meanwhile, and then it is simply still needed."""
        now = self._clock()
        if messages:
            sent = sorted(int(m.get("Attributes", {}).get("SentTimestamp", "0")) / 1000 for m in messages)
            self._oldest_sent_s = sent[0]
            self._sent.extend(sent)
        cutoff = self._wall() - WINDOW_S
        while self._sent and self._sent[0] < cutoff:
            self._sent.popleft()
        if now < self._next_check:
            return False
        if not messages and not busy and waited_s >= self.rule.empty_wait_s:
            self._next_check = now + CHECK_INTERVAL_S
            queue = self._queue_depth()
            if queue is not None and queue == (0, 0, 0):
                return self._release("queue empty")
            return False
        recent = self._recently_sent()
        if recent is not None and recent < self.rule.slow_per_minute:
            self._next_check = now + CHECK_INTERVAL_S
            queue = self._queue_depth()
            if queue is None or queue[0] + queue[1] > self.rule.caught_up_messages or queue[2]:
                return False
            running = self._running_tasks()
            if running and recent * running < self.rule.slow_per_minute:
                return self._release("caught up with a trickle")
        return False

    def _recently_sent(self) -> int | None:
        """Photos this task received that were sent in the last minute; None while its last receive held an old
        photo (a backlog is being drained)."""
        if self._oldest_sent_s is None or self._wall() - self._oldest_sent_s >= self.rule.max_age_s:
            return None
        cutoff = self._wall() - WINDOW_S
        return sum(1 for sent in self._sent if sent >= cutoff)

    def _queue_depth(self) -> tuple[int, int, int] | None:
        """(visible, in flight, delayed), or None when the queue cannot be read."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        try:
            got = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
            visible, inflight, delayed = (int(got.get(name, "0")) for name in names)
        except Exception as exc:
            log.warning("fleet release: queue attributes unreadable", extra={"reason": str(exc)})
            return None
        return visible, inflight, delayed

    def _running_tasks(self) -> int:
        """The service's running tasks (0 when it cannot be read: no release then)."""
        try:
            services = self.ecs.describe_services(cluster=self.identity.cluster, services=[self.identity.service])
            return int(services["services"][0].get("runningCount", 0))
        except Exception as exc:
            log.warning("fleet release: service unreadable", extra={"reason": str(exc)})
            return 0

    def _release(self, reason: str) -> bool:
        try:
            self.ecs.update_service(cluster=self.identity.cluster, service=self.identity.service, desiredCount=0)
            self.autoscaling.set_desired_capacity(
                AutoScalingGroupName=self.rule.host_group, DesiredCapacity=0, HonorCooldown=False
            )
        except Exception as exc:
            # The idle alarm releases the fleet a few minutes later; try again after a while.
            log.warning("fleet release failed", extra={"reason": str(exc), "why": reason})
            self._next_check = self._clock() + RETRY_AFTER_S
            return False
        self.released = reason
        self._next_check = self._clock() + RETRY_AFTER_S
        log.info(
            "fleet released",
            extra={"why": reason, "service": self.identity.service, "host_group": self.rule.host_group},
        )
        return True
