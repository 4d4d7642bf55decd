"""JSON logs and CloudWatch embedded-metric-format (EMF) lines, both on stdout for the awslogs driver.

Metrics carry raw values, not per-task summaries: every photo's download, decode and inference milliseconds go out
as EMF value arrays (serialized by Powertools' EMF provider), so the percentiles CloudWatch computes over them are
true across the whole fleet. A per-task P90 averaged over tasks would not be a percentile of anything.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from typing import IO, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

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


# EMF allows 100 values per metric in one document; Powertools publishes on its own (to stdout) on reaching 100, so
# each document is filled to one less and written here, where tests and the log driver read the same stream.
_VALUES_PER_DOCUMENT = 99
_STAGES = ("DownloadMs", "DecodeMs", "InferMs")


class Metrics:
    """Collects per-photo and per-batch values and writes EMF documents once per interval (bounding log volume)."""

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
        self._batches: list[float] = []
        self._stages: dict[str, list[float]] = {name: [] for name in _STAGES}
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

    def _provider(self, **dimensions: str) -> AmazonCloudWatchEMFProvider:
        # One provider per document: no state shared with any other (Powertools' `Metrics` shares a class-wide set).
        return AmazonCloudWatchEMFProvider(
            namespace=self.namespace, default_dimensions={"Worker": self.worker, **dimensions}
        )

    def _write(self, elapsed: float) -> None:
        series: dict[str, tuple[MetricUnit, list[float]]] = {
            "Images": (MetricUnit.Count, [float(self._images)]),
            "ImagesPerSecond": (MetricUnit.CountPerSecond, [round(self._images / max(elapsed, 1e-3), 2)]),
            "BatchSize": (MetricUnit.Count, self._batches),
            **{name: (MetricUnit.Milliseconds, [round(v, 2) for v in self._stages[name]]) for name in _STAGES},
        }
        documents: list[dict[str, Any]] = []
        longest = max(len(values) for _, values in series.values())
        for start in range(0, max(longest, 1), _VALUES_PER_DOCUMENT):
            provider = self._provider()
            for name, (unit, values) in series.items():
                for value in values[start : start + _VALUES_PER_DOCUMENT]:
                    provider.add_metric(name=name, unit=unit, value=value)
            if provider.metric_set:
                documents.append(dict(provider.serialize_metric_set()))
        for kind, count in sorted(self._errors.items()):
            provider = self._provider(ErrorKind=kind)
            provider.add_metric(name="Errors", unit=MetricUnit.Count, value=count)
            documents.append(dict(provider.serialize_metric_set()))
        self.stream.write("".join(json.dumps(d, separators=(",", ":")) + "\n" for d in documents))
        self.stream.flush()
