"""The queue, the ECS service on its capacity provider and Auto Scaling group, and the worker's own release, as the
engine (`tools.scaling_sim.engine`) steps them tick by tick."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from cdk_constructs.sla_model import HostScaling, ScalingPolicy
from tools.scaling_sim.model import SPOT_NOTICE_SECONDS, Params

# --- the queue --------------------------------------------------------------------------------------------------


class Queue:
    """FIFO of (arrival second, count) buckets plus batches hidden by a visibility timeout."""

    def __init__(self) -> None:
        self.buckets: deque[list[float]] = deque()
        self.hidden: list[tuple[float, float, float]] = []  # (visible again at, arrival, count)
        self.total = 0.0

    def add(self, arrival: float, count: float) -> None:
        if count > 0:
            self.buckets.append([arrival, count])
            self.total += count

    def take(self, count: float) -> list[tuple[float, float]]:
        """Remove up to `count` oldest messages; returns (arrival, count) pieces."""
        taken: list[tuple[float, float]] = []
        while count > 1e-9 and self.buckets:
            head = self.buckets[0]
            piece = min(head[1], count)
            taken.append((head[0], piece))
            head[1] -= piece
            count -= piece
            self.total -= piece
            if head[1] <= 1e-9:
                self.buckets.popleft()
        if not self.buckets:
            self.total = 0.0
        return taken

    def hide(self, count: float, until: float) -> None:
        """A stopped task's batch: invisible until its visibility timeout runs out."""
        for arrival, piece in self.take(count):
            self.hidden.append((until, arrival, piece))

    def release(self, now: float) -> None:
        due = [item for item in self.hidden if item[0] <= now]
        if not due:
            return
        self.hidden = [item for item in self.hidden if item[0] > now]
        # Returned messages keep their original timestamp, so they go back ahead of newer ones.
        for _, arrival, piece in sorted(due, key=lambda item: item[1], reverse=True):
            self.buckets.appendleft([arrival, piece])
            self.total += piece

    @property
    def hidden_total(self) -> float:
        return sum(item[2] for item in self.hidden)

    def oldest_age(self, now: float) -> float:
        ages = [now - self.buckets[0][0]] if self.buckets else []
        ages += [now - item[1] for item in self.hidden]
        return max(ages, default=0.0)


# --- ECS service + capacity provider ----------------------------------------------------------------------------


@dataclass(eq=False)
class Host:
    ready_at: float
    rate: float = 0.0
    spot: bool = False
    pulled: bool = False
    task: Task | None = None
    idle_since: float = 0.0
    interrupt_at: float = math.inf  # the spot interruption notice
    gone_at: float = math.inf  # terminated (spot notice, or the group scaled in): billed until then, takes no task


@dataclass(eq=False)
class Task:
    ready_at: float  # infinite while it waits for a host (PROVISIONING)
    host: Host | None


class Fleet:
    """The ECS service (desired count, tasks) on an EC2 capacity provider with one task per GPU host.

    With ECS managed scaling (`hosts` None or managed) a task that finds no free host launches one, and a host left
    empty for `host_idle_seconds` goes. Without it the group holds `group_desired` hosts, set by its own scaling
    policies; a task waits (PROVISIONING) until a host is free, and when the group scales in, its termination
    policy, which knows nothing of tasks, is taken to choose the hosts that run a task first (the worst case):
    managed draining stops the task, and the service places a replacement on a host that stays.
    """

    def __init__(self, params: Params, desired: int, hosts: HostScaling | None = None) -> None:
        self.params = params
        self.desired = desired
        self.managed = hosts is None or hosts.managed
        self.group_desired = 0 if hosts is None else hosts.min_hosts
        self.tasks: list[Task] = []
        self.hosts: list[Host] = []
        self.spot_launched = 0
        self.interruptions = 0
        self.rng = np.random.default_rng(params.seed)

    def running(self, now: float) -> list[Task]:
        return [task for task in self.tasks if task.ready_at <= now]

    def live_hosts(self) -> list[Host]:
        return [host for host in self.hosts if host.gone_at == math.inf]

    def reconcile(self, now: float, queue: Queue) -> None:
        if not self.managed:
            self._reconcile_group(now)
        while len(self.tasks) < self.desired:
            self.tasks.append(self._place(now))
        if not self.managed:
            for task in [t for t in self.tasks if t.host is None]:
                if not self._assign(task, now):
                    break
        surplus = len(self.tasks) - self.desired
        if surplus <= 0:
            return
        waiting = sorted((t for t in self.tasks if t.ready_at > now), key=lambda t: t.ready_at, reverse=True)
        for task in waiting[:surplus]:
            self._stop(task, now)
        surplus -= min(surplus, len(waiting))
        if surplus <= 0:
            return
        running = self.running(now)
        # Scale-in protection: only the tasks without messages in hand can be stopped.
        holding = min(len(running), math.ceil(queue.total / self.params.batch_size - 1e-9))
        for task in running[len(running) - min(surplus, len(running) - holding) :]:
            self._stop(task, now)

    def _reconcile_group(self, now: float) -> None:
        live = self.live_hosts()
        while len(live) < self.group_desired:
            live.append(self._launch(now))
        surplus = len(live) - self.group_desired
        if surplus <= 0:
            return
        # Busy hosts first, the newest first among equals: the worst the termination policy can do.
        victims = sorted(live, key=lambda h: (h.task is None, -h.ready_at))[:surplus]
        for host in victims:
            host.gone_at = now + self.params.host_release_seconds
            if host.task is not None:
                self._stop(host.task, now)

    def _free_hosts(self) -> list[Host]:
        return [host for host in self.hosts if host.task is None and host.gone_at == math.inf]

    def _place(self, now: float) -> Task:
        free = self._free_hosts()
        if not free and not self.managed:
            return Task(ready_at=math.inf, host=None)
        task = Task(ready_at=math.inf, host=None)
        if not free:
            self._launch(now)
        self._assign(task, now)
        return task

    def _assign(self, task: Task, now: float) -> bool:
        """Put a task waiting for a host on the free host that is up first; False when there is none."""
        free = self._free_hosts()
        if not free:
            return False
        host = min(free, key=lambda h: h.ready_at)
        # An image already on the host starts from the local cache.
        pull = 0 if host.pulled else self.params.image_pull_seconds
        task.ready_at = max(now, host.ready_at) + pull + self.params.task_start_seconds
        task.host = host
        host.task, host.pulled = task, True
        return True

    def _launch(self, now: float) -> Host:
        p = self.params
        live = self.live_hosts()
        on_demand = sum(1 for h in live if not h.spot)
        above = len(live) + 1 - p.on_demand_base
        spot = on_demand >= p.on_demand_base and (on_demand - p.on_demand_base + 1) * 100 > (
            p.on_demand_percentage_above_base * above
        )
        rate = p.rates[0]
        host = Host(ready_at=now + p.instance_launch_seconds, spot=spot)
        if spot:
            if p.spot_types_in_turn:
                rate = p.rates[self.spot_launched % len(p.rates)]
            self.spot_launched += 1
            if p.spot_interruptions_per_hour > 0:
                host.interrupt_at = now + float(self.rng.exponential(3600 / p.spot_interruptions_per_hour))
        host.rate = rate
        self.hosts.append(host)
        return host

    def _stop(self, task: Task, now: float) -> None:
        self.tasks.remove(task)
        if task.host is not None:
            task.host.task = None
            task.host.idle_since = max(now, task.host.ready_at)

    def interrupt_spot(self, now: float, queue: Queue) -> None:
        """Spot hosts whose notice comes now: the task stops (its messages go back on the queue, or reappear after
        the visibility timeout when its batch outlasts the stop timeout) and the host goes two minutes later."""
        p = self.params
        for host in self.hosts:
            if host.interrupt_at > now or host.gone_at < math.inf:
                continue
            host.gone_at = now + SPOT_NOTICE_SECONDS
            self.interruptions += 1
            task = host.task
            if task is None:
                continue
            self._stop(task, now)
            if task.ready_at <= now and queue.total > 0 and p.batch_size / host.rate > p.stop_timeout_seconds:
                queue.hide(min(float(p.batch_size), queue.total), now + p.visibility_timeout_seconds)

    def retire_idle_hosts(self, now: float) -> None:
        """Hosts past their termination leave the bill; with managed scaling so do hosts empty for too long."""
        idle = self.params.host_idle_seconds if self.managed else math.inf
        self.hosts = [
            h
            for h in self.hosts
            if now < h.gone_at and (h.task is not None or now - max(h.idle_since, h.ready_at) < idle)
        ]


class WorkerRelease:
    """The worker's own release (`ScalingPolicy.release`, worker/release.py), checked at the end of every tick as
    the worker checks after its receives: the queue empty through a whole long poll with nothing arriving (any
    fleet), or the fleet caught up with a trickle, counting the photos sent in the last minute (the worker counts
    those it received by their SentTimestamp, times the running tasks: once caught up they receive what arrives)."""

    def __init__(self, policy: ScalingPolicy, tick_seconds: int) -> None:
        assert policy.release is not None
        self.rule = policy.release
        self.quiet_since: float | None = None
        self.last_minute: deque[float] = deque(maxlen=max(1, 60 // tick_seconds))

    def due(self, now: float, arrivals: float, queue: Queue, fleet: Fleet) -> bool:
        rule = self.rule
        self.last_minute.append(arrivals)
        running = fleet.running(now)
        if not running or fleet.desired < 1:
            self.quiet_since = None
            return False
        if queue.total > 1e-9 or queue.hidden or arrivals > 0:
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = now
        if self.quiet_since is not None and now - self.quiet_since >= rule.empty_wait_seconds:
            return True
        return (
            not queue.hidden
            and queue.total <= rule.caught_up_messages
            and queue.oldest_age(now) < rule.max_age_seconds
            and sum(self.last_minute) < rule.slow_arrivals_per_minute
        )
