"""Discrete-time model of the queue, CloudWatch, Application Auto Scaling, the ECS service, its capacity provider
and the EC2 Auto Scaling group of its hosts.

Resolution: a fixed tick (TICK_SECONDS, 10 s). Within a tick, in this order:
1. messages whose visibility timeout ran out become visible again;
2. on a metric period boundary SQS, Container Insights and the Auto Scaling group take a datapoint of the current
   state (visible, not visible, age of oldest, messages sent and deleted, desired and running tasks, the group's
   desired capacity); it reaches CloudWatch metric_delay later;
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

import math
from collections import deque

import numpy as np

from cdk_constructs.sla_model import ScalingPolicy
from tools.scaling_sim.autoscaler import METRIC_SOURCES, AutoScaler, metric_value
from tools.scaling_sim.fleet import Fleet, Queue, WorkerRelease
from tools.scaling_sim.model import (
    ALARM_EVALUATION_SECONDS,
    HOST_IDLE_SECONDS,
    HOST_RELEASE_SECONDS,
    SPOT_NOTICE_SECONDS,
    TICK_SECONDS,
    Floats,
    Outcome,
    Params,
    Series,
)
from tools.scaling_sim.oracle import outcome as oracle
from tools.scaling_sim.oracle import tasks_needed

# The names the simulator's users import from here.
__all__ = [
    "HOST_IDLE_SECONDS",
    "HOST_RELEASE_SECONDS",
    "METRIC_SOURCES",
    "SPOT_NOTICE_SECONDS",
    "TICK_SECONDS",
    "AutoScaler",
    "Fleet",
    "Outcome",
    "Params",
    "Queue",
    "Series",
    "WorkerRelease",
    "metric_value",
    "oracle",
    "percentile_of_histogram",
    "simulate",
    "tasks_needed",
]


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
    sent = deleted = 0.0
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
                # Messages deleted (photos classified) during the period.
                "deleted": round(deleted, 6) if sqs_up else None,
            }
            pending.append((now + p.metric_delay_seconds, snapshot))
            sent = deleted = 0.0
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
        deleted += last_done
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
