"""The model of one `config/workers/<name>.yaml`: a GPU queue worker, its capacity, queue, SLA and scaling."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from stacks.config_fields import InstanceType, Model, _matching

# --- config/workers/*.yaml --------------------------------------------------------------------------------------


SsmParameter = Annotated[str, _matching(r"/[A-Za-z0-9_.\-/]+", "must be an SSM parameter name starting with /")]


class Capacity(Model):
    """How GPU hosts are bought: instance types in order of preference and the on-demand/spot mix."""

    instance_types: tuple[InstanceType, ...] = Field(min_length=1)
    on_demand_base: int = Field(default=0, ge=0, le=100)
    on_demand_percentage_above_base: int = Field(default=100, ge=0, le=100)
    ami_ssm_parameter: SsmParameter
    # NVIDIA driver that the pinned ECS GPU AMI release ships (from its release notes); synth checks it runs `cuda`.
    ami_driver_version: str = Field(pattern=r"^\d+(\.\d+)*$")
    root_volume_gib: int = Field(default=100, ge=30, le=2000)


class QueueSettings(Model):
    visibility_timeout_seconds: int = Field(default=900, ge=30, le=43200)
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    retention_days: int = Field(default=4, ge=1, le=14)
    dead_letter_retention_days: int = Field(default=14, ge=1, le=14)


class Scaling(Model):
    """Inputs of the SLA-driven scaling policy (see cdk_constructs/sla_scaling.py for the formula)."""

    min_tasks: int = Field(default=0, ge=0, le=1000)
    max_tasks: int = Field(default=10, ge=1, le=1000)
    scale_in_idle_minutes: int = Field(default=15, ge=1, le=1440)
    # Measured per task with `python -m worker.bench` on the target instance type.
    images_per_second_per_task: float = Field(gt=0, le=100_000)
    # Other instance types of capacity.instance_types that classify at another rate (a slower fallback).
    images_per_second_by_instance_type: dict[InstanceType, Annotated[float, Field(gt=0, le=100_000)]] = Field(
        default_factory=dict
    )
    # From zero tasks: `sla` waits while the SLA leaves room to gather photos, `immediate` wakes on the first one.
    wake: Literal["sla", "immediate"] = "sla"


class Simulation(Model):
    """Delays the scaling simulator models; the defaults are typical published figures, override with measurements."""

    metric_period_seconds: int = Field(default=60, ge=60, le=300)
    metric_delay_seconds: int = Field(default=120, ge=0, le=900)
    instance_launch_seconds: int = Field(default=240, ge=0, le=3600)
    image_pull_seconds: int = Field(default=90, ge=0, le=3600)
    task_start_seconds: int = Field(default=30, ge=0, le=3600)
    gpu_hourly_usd: float = Field(default=1.006, gt=0, le=1000)
    # Chance per hour that a spot host gets its two-minute interruption notice.
    spot_interruptions_per_hour: float = Field(default=0.0, ge=0, le=1)


class WorkerConfig(Model):
    """One queue worker (`config/workers/<name>.yaml`): the single source of its settings."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")
    image_dir: str = Field(pattern=r"^[A-Za-z0-9_./-]+$")
    cuda: str = Field(pattern=r"^\d+\.\d+$")
    gpu_count: int = Field(default=1, ge=1, le=8)
    cpu: int = Field(ge=256, le=196608)
    memory_mib: int = Field(ge=512, le=2_000_000)
    capacity: Capacity
    queue: QueueSettings = QueueSettings()
    sla_minutes: int = Field(ge=5, le=1440)
    scaling: Scaling
    batch_size: int = Field(default=32, ge=1, le=1024)
    stop_timeout_seconds: int = Field(default=120, ge=30, le=120)
    # S3 key prefix whose uploads this worker classifies; two workers need non-overlapping prefixes.
    input_prefix: str = Field(default="uploads/", pattern=r"^uploads/([a-z0-9-]+/)?$")
    model_uri: str = Field(pattern=r"^(s3://[a-z0-9.-]+/.+|/[^\s]+)$")
    result_ttl_days: int = Field(default=30, ge=1, le=3650)
    max_upload_mib: int = Field(default=20, ge=1, le=200)
    upload_retention_days: int = Field(default=30, ge=1, le=3650)
    environment: dict[str, str] = Field(default_factory=dict)
    simulation: Simulation = Simulation()
