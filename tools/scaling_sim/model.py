"""The simulator's data: the worker and AWS timings it runs with (`Params`), and what a run produced (`Outcome`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stacks.config import WorkerConfig

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
