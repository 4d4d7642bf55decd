"""Discrete-time model of the queue, CloudWatch, Application Auto Scaling, the ECS service, its capacity provider
and the EC2 Auto Scaling group of its hosts.

Resolution: a fixed tick (TICK_SECONDS, 10 s). Within a tick, in this order:
1. messages whose visibility timeout ran out become visible again;
2. on a metric period boundary SQS, Container Insights and the Auto Scaling group take a datapoint of the current
   state (visible, not visible, age of oldest, messages sent, desired and running tasks, the group's desired
   capacity); it reaches CloudWatch metric_delay later;
3. every minute each alarm looks at the datapoints that have arrived; Application Auto Scaling invokes the
   service's policy of every alarm in ALARM (once a minute while it stays there: CloudWatch repeats Auto Scaling
   actions while the alarm state lasts, AmazonCloudWatch/latest/monitoring/alarm-actions.html) and applies
   cooldowns; when managed scaling is off, EC2 Auto Scaling sets the group to the ExactCapacity of every host
   step policy whose alarm is in ALARM, the largest when several act (no cooldown for step policies);
4. a spot host whose interruption notice comes (seeded, `spot_interruptions_per_hour`) loses its task at once
   (the worker releases its messages back to the queue on SIGTERM) and is billed two more minutes;
5. hosts: with ECS managed scaling (the reference designs) a task that finds no free host launches one; without
   it the group launches hosts up to its desired capacity or terminates the surplus, the hosts running a task
   first (its termination policy knows nothing of tasks; this is the worst case), each billed
   `host_release_seconds` more (managed draining stops its task first);
6. the ECS service starts tasks up to the desired count (a free host: start at once, a host still booting:
   when it is up, none: wait for one, PROVISIONING) or stops the surplus: tasks not yet started first, then
   running tasks that hold no messages; a task holding messages has ECS task scale-in protection and is stopped
   only once it holds none;
7. photos of the minute arrive, spread evenly over its ticks;
8. every running task processes its host's rate * tick photos, oldest first; a photo's wait is the end of
   the tick it finishes in minus its arrival. A host's rate is its instance type's: every host is the first type,
   as the group's prioritized on-demand and capacity-optimized-prioritized spot strategies ask; with
   `spot_types_in_turn` (a sensitivity case: the first type's spot pools short, as capacity-optimized-prioritized
   allows, since it honours the order only on a best-effort basis) spot hosts take the types in turn;
9. hosts are billed while booting, up or draining; with managed scaling one left empty for HOST_IDLE_SECONDS is
   terminated;
10. with `wake: sla` the worker's own release (`WorkerRelease`, worker/release.py) looks at the queue as the worker
   does after its receives, and when its rule holds sets the tasks and the group to zero at once.
Waits are therefore exact to one tick. A day is 8,640 ticks; the loop is plain Python over at most max_tasks
tasks and runs in well under a second.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cdk_constructs.sla_scaling import HostScaling, MetricSpec, ScalingPolicy, Step, StepPolicy, TargetTracking
from stacks.config import WorkerConfig
from tools.scaling_sim import oracle as host_oracle
from tools.scaling_sim.metricmath import evaluate_spec

TICK_SECONDS = 10
# ECS managed scaling (the reference designs) removes an empty host after its scale-in alarm, 15 one-minute
# datapoints (AmazonECS/latest/developerguide/managed-scaling-behavior.html, "Managed scale-in behavior").
HOST_IDLE_SECONDS = 900
# Without managed scaling, a host the group terminates is billed this long after the decision: ECS managed draining
# holds the termination in a lifecycle hook until the host runs no task (its task finishes its batch on SIGTERM
# within seconds), then EC2 shuts it down. An estimate; AWS publishes no figure.
HOST_RELEASE_SECONDS = 60
# SQS stops sending metrics for a queue idle for six hours and needs up to 15 minutes to resume after a message.
SQS_SLEEP_AFTER_SECONDS = 6 * 3600
SQS_RESUME_SECONDS = 900
ALARM_EVALUATION_SECONDS = 60
SPOT_NOTICE_SECONDS = 120

# (namespace, metric name) -> the snapshot field the simulator reports for it.
METRIC_SOURCES = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): "visible",
    ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible"): "inflight",
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): "age",
    ("AWS/SQS", "NumberOfMessagesSent"): "sent",
    ("ECS/ContainerInsights", "DesiredTaskCount"): "desired",
    ("ECS/ContainerInsights", "RunningTaskCount"): "running",
    ("AWS/AutoScaling", "GroupDesiredCapacity"): "hosts",
}
SQS_FIELDS = frozenset({"visible", "inflight", "age", "sent"})

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Params:
    """Everything about the worker and AWS timing the simulation needs, normally from the worker YAML."""

    sla_seconds: int
    images_per_second: float
    batch_size: int
    stop_timeout_seconds: int
    visibility_timeout_seconds: int
    metric_period_seconds: int
    metric_delay_seconds: int
    instance_launch_seconds: int
    image_pull_seconds: int
    task_start_seconds: int
    gpus_per_task: int
    gpu_hourly_usd: float
    # Rate of each instance type in the group's order (default: images_per_second for one type).
    instance_rates: tuple[float, ...] = ()
    on_demand_base: int = 0
    on_demand_percentage_above_base: int = 100
    spot_interruptions_per_hour: float = 0.0
    # Spot hosts alternate the instance types instead of all being the first (its spot pools short).
    spot_types_in_turn: bool = False
    seed: int = 0
    tick_seconds: int = TICK_SECONDS
    host_idle_seconds: int = HOST_IDLE_SECONDS
    host_release_seconds: int = HOST_RELEASE_SECONDS
    sqs_sleep_after_seconds: int = SQS_SLEEP_AFTER_SECONDS
    sqs_resume_seconds: int = SQS_RESUME_SECONDS

    @property
    def rates(self) -> tuple[float, ...]:
        return self.instance_rates or (self.images_per_second,)

    @property
    def startup_seconds(self) -> int:
        """From launching a fresh host to its task classifying."""
        return self.instance_launch_seconds + self.image_pull_seconds + self.task_start_seconds

    @classmethod
    def from_worker(cls, worker: WorkerConfig) -> Params:
        sim, scaling = worker.simulation, worker.scaling
        rates = tuple(
            scaling.images_per_second_by_instance_type.get(t, scaling.images_per_second_per_task)
            for t in worker.capacity.instance_types
        )
        return cls(
            sla_seconds=worker.sla_minutes * 60,
            images_per_second=worker.scaling.images_per_second_per_task,
            batch_size=worker.batch_size,
            stop_timeout_seconds=worker.stop_timeout_seconds,
            visibility_timeout_seconds=worker.queue.visibility_timeout_seconds,
            metric_period_seconds=sim.metric_period_seconds,
            metric_delay_seconds=sim.metric_delay_seconds,
            instance_launch_seconds=sim.instance_launch_seconds,
            image_pull_seconds=sim.image_pull_seconds,
            task_start_seconds=sim.task_start_seconds,
            gpus_per_task=worker.gpu_count,
            gpu_hourly_usd=sim.gpu_hourly_usd,
            instance_rates=rates,
            on_demand_base=worker.capacity.on_demand_base,
            on_demand_percentage_above_base=worker.capacity.on_demand_percentage_above_base,
            spot_interruptions_per_hour=sim.spot_interruptions_per_hour,
        )


@dataclass
class Series:
    """Per-tick time series for plots."""

    seconds: Floats
    age: Floats
    running: Floats
    desired: Floats
    hosts: Floats  # billed hosts (booting, up, or draining)


@dataclass(frozen=True)
class Outcome:
    """What one policy did to one traffic profile."""

    policy: str
    profile: str
    photos: float
    max_age_s: float
    p99_age_s: float
    p99_latency_s: float
    over_sla: int
    gpu_hours: float
    cost_usd: float
    scale_events: int
    peak_tasks: int
    zero_minutes: float
    tasks_needed: int | None = None
    interruptions: int = 0
    series: Series | None = field(default=None, compare=False, repr=False)

    def row(self) -> dict[str, object]:
        """The machine-readable form (`--json`)."""
        return {
            "policy": self.policy,
            "profile": self.profile,
            "photos": round(self.photos),
            "max_age_s": _seconds(self.max_age_s),
            "p99_age_s": _seconds(self.p99_age_s),
            "p99_latency_s": _seconds(self.p99_latency_s),
            "over_sla": self.over_sla,
            "gpu_hours": round(self.gpu_hours, 2),
            "cost_usd": round(self.cost_usd, 2),
            "scale_events": self.scale_events,
            "peak_tasks": self.peak_tasks,
            "zero_minutes": round(self.zero_minutes, 1),
            "tasks_needed": self.tasks_needed,
            "spot_interruptions": self.interruptions,
        }


def _seconds(value: float) -> float | None:
    """Rounded for JSON; None for the oracle's ages, which it does not compute (JSON has no NaN)."""
    return None if math.isnan(value) else round(value, 1)


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


# --- Application Auto Scaling -----------------------------------------------------------------------------------


@dataclass
class _Cooldown:
    until: float = -math.inf
    base: int = 0  # capacity before the scale-out that started the cooldown


@dataclass
class _PolicyState:
    values: list[float | None] = field(default_factory=list)
    out: _Cooldown = field(default_factory=_Cooldown)
    inward: _Cooldown = field(default_factory=_Cooldown)


class AutoScaler:
    """Alarms and Application Auto Scaling policies of one `ScalingPolicy` over the service's scalable target, and
    the EC2 Auto Scaling step policies on the host group when managed scaling is off."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.tracking = {tt.name: _PolicyState() for tt in policy.target_tracking}
        self.steps = {sp.name: _PolicyState() for sp in policy.step_policies}
        self.host_steps = {sp.name: _PolicyState() for sp in policy.hosts.policies}

    def observe(self, snapshot: dict[str, float | None]) -> None:
        """One datapoint has reached CloudWatch: evaluate every policy's metric math on it."""
        for tt in self.policy.target_tracking:
            self.tracking[tt.name].values.append(metric_value(tt.metric, snapshot))
        for sp in self.policy.step_policies:
            self.steps[sp.name].values.append(metric_value(sp.metric, snapshot))
        for sp in self.policy.hosts.policies:
            self.host_steps[sp.name].values.append(metric_value(sp.metric, snapshot))

    def evaluate(self, now: float, desired: int) -> int:
        """Invoke the policies whose alarms are in ALARM; returns the new desired count."""
        for tt in self.policy.target_tracking:
            desired = self._track(tt, self.tracking[tt.name], now, desired)
        for sp in self.policy.step_policies:
            desired = self._step(sp, self.steps[sp.name], now, desired)
        return desired

    def evaluate_hosts(self, hosts: int) -> int:
        """The group's desired capacity after the EC2 Auto Scaling step policies whose alarms are in ALARM: each
        sets its step's ExactCapacity (step policies have no cooldown), and when several act at once the group
        takes the largest capacity (EC2 Auto Scaling, "Multiple dynamic scaling policies")."""
        wanted: list[int] = []
        for sp in self.policy.step_policies:
            if sp.host_steps:
                wanted += _exact(sp, sp.host_steps, self.steps[sp.name])
        for sp in self.policy.hosts.policies:
            wanted += _exact(sp, sp.steps, self.host_steps[sp.name])
        if not wanted:
            return hosts
        return max(self.policy.hosts.min_hosts, min(self.policy.hosts.max_hosts, max(wanted)))

    def _clamp(self, capacity: int) -> int:
        return max(self.policy.min_capacity, min(self.policy.max_capacity, capacity))

    def _track(self, tt: TargetTracking, state: _PolicyState, now: float, desired: int) -> int:
        high = state.values[-tt.high_alarm_datapoints :]
        if len(high) == tt.high_alarm_datapoints and all(v is not None and v > tt.target_value for v in high):
            value = high[-1]
            assert value is not None
            # During the cooldown the capacity the last scale-out added counts: size from the capacity before it.
            base = state.out.base if now < state.out.until else desired
            wanted = self._clamp(math.ceil(base * value / tt.target_value))
            if wanted > desired:
                if now >= state.out.until:
                    state.out = _Cooldown(now + tt.scale_out_cooldown_seconds, desired)
                return wanted
            return desired
        low = state.values[-tt.low_alarm_datapoints :]
        threshold = tt.low_alarm_ratio * tt.target_value
        if (
            not tt.disable_scale_in
            and now >= state.inward.until
            and len(low) == tt.low_alarm_datapoints
            and all(v is not None and v < threshold for v in low)
        ):
            value = low[-1]
            assert value is not None
            wanted = self._clamp(math.ceil(desired * value / tt.target_value))
            if wanted < desired:
                state.inward = _Cooldown(now + tt.scale_in_cooldown_seconds, desired)
                return wanted
        return desired

    def _step(self, sp: StepPolicy, state: _PolicyState, now: float, desired: int) -> int:
        value = _alarm_value(sp, state)
        if value is None:
            return desired
        below = sp.comparison == "LessThanOrEqualToThreshold"
        step = next((s for s in sp.steps if s.contains(value, below_threshold=below)), None)
        if step is None:
            return desired
        cooling = now < state.out.until
        base = state.out.base if cooling and sp.adjustment_type != "ExactCapacity" else desired
        wanted = self._clamp(_adjust(sp, step.adjustment, base))
        if wanted > desired:
            if not cooling:
                state.out = _Cooldown(now + sp.cooldown_seconds, desired)
            return wanted
        if wanted < desired and not cooling:
            state.out = _Cooldown(now + sp.cooldown_seconds, desired)
            return wanted
        return desired


def _alarm_value(sp: StepPolicy, state: _PolicyState) -> float | None:
    """The latest datapoint while the alarm is in ALARM (datapoints_to_alarm of the last evaluation_periods
    breach), else None."""
    recent = state.values[-sp.evaluation_periods :]
    below = sp.comparison == "LessThanOrEqualToThreshold"
    breaching = sum(1 for v in recent if v is not None and (v <= sp.threshold if below else v >= sp.threshold))
    value = recent[-1] if recent else None
    return value if breaching >= sp.datapoints_to_alarm else None


def _exact(sp: StepPolicy, steps: tuple[Step, ...], state: _PolicyState) -> list[int]:
    """The ExactCapacity an alarm in ALARM asks of the group through `steps` ([] when none applies)."""
    value = _alarm_value(sp, state)
    if value is None:
        return []
    below = sp.comparison == "LessThanOrEqualToThreshold"
    step = next((s for s in steps if s.contains(value, below_threshold=below)), None)
    return [] if step is None else [step.adjustment]


def _adjust(sp: StepPolicy, adjustment: int, capacity: int) -> int:
    if sp.adjustment_type == "ExactCapacity":
        return adjustment
    if sp.adjustment_type == "ChangeInCapacity":
        return capacity + adjustment
    change = int(capacity * adjustment / 100)  # Application Auto Scaling rounds toward zero
    if sp.min_adjustment_magnitude and abs(change) < sp.min_adjustment_magnitude:
        change = int(math.copysign(sp.min_adjustment_magnitude, adjustment))
    return capacity + change


def metric_value(metric: MetricSpec, snapshot: Mapping[str, float | None]) -> float | None:
    """The value of `metric` on one datapoint: its queries read from the snapshot, then its parts, then the
    expression."""
    values = {query.id: snapshot[METRIC_SOURCES[(query.namespace, query.metric_name)]] for query in metric.queries}
    return evaluate_spec(metric.expression, metric.parts, values)


# --- the run ----------------------------------------------------------------------------------------------------


def simulate(
    policy: ScalingPolicy,
    per_minute: Floats,
    params: Params,
    *,
    name: str = "",
    profile: str = "",
    drain_minutes: int | None = None,
) -> Outcome:
    """Replay `per_minute` arrivals against `policy`; runs until the traffic ends plus `drain_minutes` (2 SLAs)."""
    p = params
    dt = p.tick_seconds
    ticks_per_minute = 60 // dt
    drain = 2 * p.sla_seconds // 60 if drain_minutes is None else drain_minutes
    n_ticks = (len(per_minute) + drain) * ticks_per_minute
    queue = Queue()
    fleet = Fleet(p, desired=policy.min_capacity, hosts=policy.hosts)
    scaler = AutoScaler(policy)
    pending: deque[tuple[float, dict[str, float | None]]] = deque()
    waits = np.zeros(n_ticks + 2)  # photos finished per wait, in ticks
    age = np.zeros(n_ticks)
    running_series = np.zeros(n_ticks)
    desired_series = np.zeros(n_ticks)
    host_series = np.zeros(n_ticks)
    host_seconds = 0.0
    scale_events = 0
    last_active = 0.0  # the queue is awake when the run starts; only silence within the run puts it to sleep
    sqs_resumes_at = -math.inf
    last_done = 0.0
    sent = 0.0
    release = WorkerRelease(policy, dt) if policy.release else None

    for i in range(n_ticks):
        now = float(i * dt)
        minute = i // ticks_per_minute
        arrivals = per_minute[minute] / ticks_per_minute if minute < len(per_minute) else 0.0
        queue.release(now)

        if i and (i * dt) % p.metric_period_seconds == 0:
            running = fleet.running(now)
            held = len(running) * float(p.batch_size)
            # Received, not yet deleted: full batches while there is a backlog; with none, Little's law (the
            # last tick's throughput times the time a batch takes).
            in_hand = min(held, queue.total + last_done / (p.images_per_second * dt) * p.batch_size)
            sqs_up = now >= sqs_resumes_at
            snapshot: dict[str, float | None] = {
                # Rounded: a photo spread over a minute's ticks must add up to exactly one message.
                "visible": round(queue.total - min(queue.total, held), 6) if sqs_up else None,
                "inflight": round(in_hand + queue.hidden_total, 6) if sqs_up else None,
                "age": queue.oldest_age(now) if sqs_up else None,
                "desired": float(fleet.desired),
                "running": float(len(running)),
                "hosts": float(len(fleet.live_hosts()) if fleet.managed else fleet.group_desired),
                # Messages sent during the period now ending (a Sum over the period).
                "sent": round(sent, 6) if sqs_up else None,
            }
            pending.append((now + p.metric_delay_seconds, snapshot))
            sent = 0.0
        while pending and pending[0][0] <= now:
            scaler.observe(pending.popleft()[1])
        if (i * dt) % ALARM_EVALUATION_SECONDS == 0:
            desired = scaler.evaluate(now, fleet.desired)
            if desired != fleet.desired:
                scale_events += 1
                fleet.desired = desired
            if not fleet.managed:
                fleet.group_desired = scaler.evaluate_hosts(fleet.group_desired)
        fleet.interrupt_spot(now, queue)
        fleet.reconcile(now, queue)

        if arrivals > 0:
            if now - last_active >= p.sqs_sleep_after_seconds:
                sqs_resumes_at = now + p.sqs_resume_seconds
            queue.add(now, arrivals)
            sent += arrivals
        if queue.total > 0 or queue.hidden:
            last_active = now
        age[i] = queue.oldest_age(now)

        end = now + dt
        capacity = sum(
            task.host.rate * (end - max(task.ready_at, now))
            for task in fleet.tasks
            if task.host is not None and task.ready_at < end
        )
        last_done = 0.0
        for arrival, count in queue.take(capacity):
            waits[round((end - arrival) / dt)] += count
            last_done += count
        running_series[i] = sum(1 for task in fleet.tasks if task.ready_at <= now)
        desired_series[i] = fleet.desired
        host_series[i] = len(fleet.hosts)
        host_seconds += len(fleet.hosts) * dt
        if release is not None and release.due(end, arrivals, queue, fleet):
            fleet.desired = policy.min_capacity
            fleet.group_desired = policy.hosts.min_hosts
            scale_events += 1
        fleet.retire_idle_hosts(end)

    return _outcome(
        name,
        profile,
        per_minute,
        p,
        waits,
        age,
        running_series,
        desired_series,
        host_series,
        host_seconds,
        scale_events,
        queue,
        n_ticks,
        fleet.interruptions,
    )


def _outcome(
    name: str,
    profile: str,
    per_minute: Floats,
    p: Params,
    waits: Floats,
    age: Floats,
    running: Floats,
    desired: Floats,
    hosts: Floats,
    host_seconds: float,
    scale_events: int,
    queue: Queue,
    n_ticks: int,
    interruptions: int,
) -> Outcome:
    dt = p.tick_seconds
    sla_ticks = p.sla_seconds // dt
    # Photos still queued at the end count against the SLA only if they are already late.
    late = float(waits[sla_ticks + 1 :].sum()) + sum(c for a, c in queue.buckets if n_ticks * dt - a > p.sla_seconds)
    gpu_hours = host_seconds / 3600 * p.gpus_per_task
    return Outcome(
        policy=name,
        profile=profile,
        photos=float(per_minute.sum()),
        max_age_s=float(age.max(initial=0.0)),
        p99_age_s=float(np.percentile(age, 99)) if len(age) else 0.0,
        p99_latency_s=percentile_of_histogram(waits, 99) * dt,
        over_sla=round(late),
        gpu_hours=gpu_hours,
        cost_usd=gpu_hours * p.gpu_hourly_usd,
        scale_events=scale_events,
        peak_tasks=int(running.max(initial=0)),
        zero_minutes=float((desired == 0).sum() * dt / 60),
        interruptions=interruptions,
        series=Series(
            seconds=np.arange(n_ticks, dtype=np.float64) * dt, age=age, running=running, desired=desired, hosts=hosts
        ),
    )


def percentile_of_histogram(counts: Floats, q: float) -> float:
    """The bin index below which q% of the weight lies (0 when empty)."""
    total = counts.sum()
    if total <= 0:
        return 0.0
    return float(np.searchsorted(np.cumsum(counts), total * q / 100.0))


# --- the oracle -------------------------------------------------------------------------------------------------


def fifo_waits(per_minute: Floats, params: Params, tasks: float, drain_ticks: int) -> tuple[Floats, Floats, Floats]:
    """Photos served oldest first by `tasks` always-ready tasks: (histogram of waits in ticks, age series,
    busy tasks series)."""
    dt = params.tick_seconds
    ticks_per_minute = 60 // dt
    n_ticks = len(per_minute) * ticks_per_minute + drain_ticks
    queue = Queue()
    waits = np.zeros(n_ticks + 2)
    age = np.zeros(n_ticks)
    busy = np.zeros(n_ticks)
    capacity = tasks * params.images_per_second * dt
    for i in range(n_ticks):
        now = float(i * dt)
        minute = i // ticks_per_minute
        if minute < len(per_minute):
            queue.add(now, per_minute[minute] / ticks_per_minute)
        age[i] = queue.oldest_age(now)
        done = 0.0
        for arrival, count in queue.take(capacity):
            waits[round((now + dt - arrival) / dt)] += count
            done += count
        busy[i] = done / (params.images_per_second * dt)
    return waits, age, busy


def _late(waits: Floats, params: Params) -> float:
    return float(waits[params.sla_seconds // params.tick_seconds + 1 :].sum())


def tasks_needed(per_minute: Floats, params: Params, drain_ticks: int, limit: int = 10_000) -> int | None:
    """The fewest always-ready tasks that keep every photo within the SLA (None above `limit`)."""
    low, high = 0, 1
    while _late(fifo_waits(per_minute, params, high, drain_ticks)[0], params) >= 0.5:
        low, high = high, high * 2
        if high > limit:
            return None
    while high - low > 1:  # late(low) > 0, late(high) == 0
        middle = (low + high) // 2
        if _late(fifo_waits(per_minute, params, middle, drain_ticks)[0], params) >= 0.5:
            low = middle
        else:
            high = middle
    return high


def oracle(per_minute: Floats, params: Params, max_tasks: int, *, profile: str = "") -> Outcome:
    """The host-aware lower bound (`tools.scaling_sim.oracle`): the fewest GPU-hours any schedule can spend on this
    traffic, knowing it in advance, with whole hosts of the fastest instance type, their start-up time, per-second
    billing and every photo within the SLA. Infeasible traffic (no schedule within max_tasks meets the SLA) gives
    infinite GPU-hours. `tasks_needed`: the fewest always-ready tasks that keep every photo within the SLA.
    """
    p = params
    fastest = dataclasses.replace(p, images_per_second=max(p.rates), instance_rates=())
    result = host_oracle.solve(
        per_minute,
        sla_seconds=p.sla_seconds,
        images_per_second=fastest.images_per_second,
        startup_seconds=p.startup_seconds,
        max_tasks=max_tasks,
    )
    gpu_hours = result.bound_host_seconds / 3600 * p.gpus_per_task
    ticks_per_minute = 60 // p.tick_seconds
    hosts = np.repeat(result.hosts, ticks_per_minute)
    drain_ticks = 2 * p.sla_seconds // p.tick_seconds
    return Outcome(
        policy="oracle",
        profile=profile,
        photos=float(per_minute.sum()),
        max_age_s=math.nan,
        p99_age_s=math.nan,
        p99_latency_s=math.nan,
        over_sla=0 if result.feasible else -1,
        gpu_hours=gpu_hours,
        cost_usd=gpu_hours * p.gpu_hourly_usd,
        scale_events=0,
        peak_tasks=math.ceil(float(hosts.max(initial=0.0)) - 1e-6),
        zero_minutes=float((result.hosts <= 1e-6).sum()),
        tasks_needed=tasks_needed(per_minute, fastest, drain_ticks),
        series=Series(
            seconds=np.arange(len(hosts), dtype=np.float64) * p.tick_seconds,
            age=np.full(len(hosts), math.nan),
            running=hosts,
            desired=hosts,
            hosts=hosts,
        ),
    )
