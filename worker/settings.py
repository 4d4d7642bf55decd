"""Worker settings from the environment variables the CDK construct sets, validated once at start."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A missing or invalid environment variable; the message is one line naming it, the value and what is allowed."""


@dataclass(frozen=True)
class Settings:
    queue_url: str
    upload_bucket: str
    results_table: str
    model_uri: str
    results_topic_arn: str | None = None
    batch_size: int = 32
    batch_timeout_ms: int = 200
    decode_workers: int = 1
    download_concurrency: int = 16
    visibility_timeout_s: int = 300
    max_pixels: int = 40_000_000
    device: str = "auto"
    endpoint_url: str | None = None
    worker_name: str = "worker"
    metrics_namespace: str = "mlbase/worker"
    result_ttl_days: int = 30
    region: str | None = None
    # Long-poll wait; 20 s (the SQS maximum) in production, shorter in tests so shutdown is quick.
    wait_time_s: int = 20
    # Must not exceed the ECS task's stopTimeout: after SIGTERM, work still in hand at the deadline is released.
    stop_timeout_s: int = 30
    # Base of the exponential visibility backoff for transient failures (throttling, timeouts).
    retry_delay_s: int = 30
    # Scale-in protection lifetime; renewed while busy so a hung worker cannot block scale-in for ever.
    protection_minutes: int = 60
    ecs_agent_uri: str | None = None
    log_level: str = "INFO"
    # nvJPEG decoding of plain JPEGs when the model runs on CUDA and torchvision is installed (`off` to disable).
    gpu_decode: str = "auto"
    ecs_metadata_uri: str | None = None
    # `wake: sla` fleet release (worker/release.py): on when the construct names the host group.
    release_host_group: str | None = None
    release_caught_up_messages: int = 64
    release_max_age_s: int = 120
    release_slow_per_minute: int = 0


def _int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected an integer from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name}={raw!r}: expected an integer from {minimum} to {maximum}")
    return value


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        for value in allowed:
            if raw.strip().lower() == value.lower():
                return value
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(allowed)}")

    return parse


def _model_uri(name: str, raw: str) -> str:
    if raw.startswith("s3://"):
        bucket, _, _prefix = raw[5:].partition("/")
        if not bucket:
            raise SettingsError(f"{name}={raw!r}: expected s3://bucket/prefix/ or a local directory")
        return raw
    if not raw.strip():
        raise SettingsError(f"{name}={raw!r}: expected s3://bucket/prefix/ or a local directory")
    return raw


def _get(env: Mapping[str, str], name: str, parse: Callable[[str, str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return parse(name, raw)


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    raw = env.get(name, "")
    if not raw.strip():
        raise SettingsError(f"{name} is missing: expected {what}")
    return raw.strip()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validate the environment into `Settings`; raises `SettingsError` with a one-line reason."""
    env = os.environ if env is None else env

    def integer(minimum: int, maximum: int) -> Callable[[str, str], int]:
        return lambda name, raw: _int(name, raw, minimum, maximum)

    def text(name: str, raw: str) -> str:
        return raw.strip()

    queue_url = _required(env, "MLBASE_QUEUE_URL", "the URL of the SQS queue of S3 upload events")
    if not queue_url.startswith(("https://", "http://")):
        raise SettingsError(f"MLBASE_QUEUE_URL={queue_url!r}: expected an SQS queue URL (https://...)")
    return Settings(
        queue_url=queue_url,
        upload_bucket=_required(env, "MLBASE_UPLOAD_BUCKET", "the name of the upload bucket"),
        results_table=_required(env, "MLBASE_RESULTS_TABLE", "the name of the DynamoDB results table"),
        model_uri=_model_uri("MLBASE_MODEL_URI", _required(env, "MLBASE_MODEL_URI", "s3://bucket/prefix/ or a dir")),
        results_topic_arn=_get(env, "MLBASE_RESULTS_TOPIC_ARN", text, None),
        batch_size=_get(env, "MLBASE_BATCH_SIZE", integer(1, 4096), 32),
        batch_timeout_ms=_get(env, "MLBASE_BATCH_TIMEOUT_MS", integer(0, 60_000), 200),
        decode_workers=_get(env, "MLBASE_DECODE_WORKERS", integer(1, 512), os.cpu_count() or 1),
        download_concurrency=_get(env, "MLBASE_DOWNLOAD_CONCURRENCY", integer(1, 512), 16),
        visibility_timeout_s=_get(env, "MLBASE_VISIBILITY_TIMEOUT_S", integer(30, 43_200), 300),
        max_pixels=_get(env, "MLBASE_MAX_PIXELS", integer(1, 1_000_000_000), 40_000_000),
        device=_get(env, "MLBASE_DEVICE", _choice("auto", "cpu", "cuda"), "auto"),
        endpoint_url=_get(env, "MLBASE_ENDPOINT_URL", text, None),
        worker_name=_get(env, "MLBASE_WORKER_NAME", text, "worker"),
        metrics_namespace=_get(env, "MLBASE_METRICS_NAMESPACE", text, "mlbase/worker"),
        result_ttl_days=_get(env, "MLBASE_RESULT_TTL_DAYS", integer(1, 3650), 30),
        region=_get(env, "AWS_REGION", text, None) or _get(env, "AWS_DEFAULT_REGION", text, None),
        wait_time_s=_get(env, "MLBASE_WAIT_TIME_S", integer(0, 20), 20),
        stop_timeout_s=_get(env, "MLBASE_STOP_TIMEOUT_S", integer(2, 120), 30),
        retry_delay_s=_get(env, "MLBASE_RETRY_DELAY_S", integer(0, 43_200), 30),
        protection_minutes=_get(env, "MLBASE_PROTECTION_MINUTES", integer(1, 2880), 60),
        ecs_agent_uri=_get(env, "ECS_AGENT_URI", text, None),
        gpu_decode=_get(env, "MLBASE_GPU_DECODE", _choice("auto", "off"), "auto"),
        ecs_metadata_uri=_get(env, "ECS_CONTAINER_METADATA_URI_V4", text, None),
        release_host_group=_get(env, "MLBASE_RELEASE_HOST_GROUP", text, None),
        release_caught_up_messages=_get(env, "MLBASE_RELEASE_CAUGHT_UP_MESSAGES", integer(0, 1_000_000), 64),
        release_max_age_s=_get(env, "MLBASE_RELEASE_MAX_AGE_S", integer(0, 43_200), 120),
        release_slow_per_minute=_get(env, "MLBASE_RELEASE_SLOW_PER_MINUTE", integer(0, 10_000_000), 0),
        log_level=_get(env, "MLBASE_LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
    )
