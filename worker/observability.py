"""JSON logs and CloudWatch embedded-metric-format (EMF) lines, both on stdout for the awslogs driver."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from typing import IO, Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={...}` fields become top-level keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Metrics:
    """Aggregates per-batch figures and writes one EMF document per interval (not per batch, to bound log volume)."""

    def __init__(self, namespace: str, worker: str, interval_s: float = 10.0, stream: IO[str] | None = None) -> None:
        self.namespace = namespace
        self.worker = worker
        self.interval_s = interval_s
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._started = time.monotonic()
        self._images = 0
        self._batches: list[int] = []
        self._stages: dict[str, list[float]] = {"DownloadMs": [], "DecodeMs": [], "InferMs": []}
        self._errors: Counter[str] = Counter()

    def record_batch(self, size: int, infer_ms: float) -> None:
        with self._lock:
            self._batches.append(size)
            self._stages["InferMs"].append(infer_ms)

    def record_image(self, download_ms: float | None, decode_ms: float | None, error: str | None) -> None:
        with self._lock:
            self._images += 1
            if download_ms is not None:
                self._stages["DownloadMs"].append(download_ms)
            if decode_ms is not None:
                self._stages["DecodeMs"].append(decode_ms)
            if error:
                self._errors[error] += 1

    def record_error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] += 1

    def flush(self, force: bool = False) -> None:
        with self._lock:
            elapsed = time.monotonic() - self._started
            if not force and elapsed < self.interval_s:
                return
            if self._images or self._errors or self._batches:
                self._write(elapsed)
            self._reset()

    def _write(self, elapsed: float) -> None:
        now = int(time.time() * 1000)
        values: dict[str, float] = {
            "Images": self._images,
            "ImagesPerSecond": round(self._images / max(elapsed, 1e-3), 2),
        }
        units = {"Images": "Count", "ImagesPerSecond": "Count/Second", "BatchSize": "Count"}
        if self._batches:
            values["BatchSize"] = round(sum(self._batches) / len(self._batches), 2)
        for name, samples in self._stages.items():
            if samples:
                values[f"{name}P50"] = round(_percentile(samples, 0.5), 2)
                values[f"{name}P90"] = round(_percentile(samples, 0.9), 2)
                units[f"{name}P50"] = units[f"{name}P90"] = "Milliseconds"
        doc: dict[str, Any] = {
            "_aws": {
                "Timestamp": now,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["Worker"]],
                        "Metrics": [{"Name": k, "Unit": units[k]} for k in values],
                    }
                ],
            },
            "Worker": self.worker,
            **values,
        }
        lines = [json.dumps(doc)]
        for kind, count in sorted(self._errors.items()):
            lines.append(
                json.dumps(
                    {
                        "_aws": {
                            "Timestamp": now,
                            "CloudWatchMetrics": [
                                {
                                    "Namespace": self.namespace,
                                    "Dimensions": [["Worker", "ErrorKind"]],
                                    "Metrics": [{"Name": "Errors", "Unit": "Count"}],
                                }
                            ],
                        },
                        "Worker": self.worker,
                        "ErrorKind": kind,
                        "Errors": count,
                    }
                )
            )
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
