"""The queue worker: long-poll SQS, download from S3, decode, batch, classify, write results, delete messages.

A message is deleted only after every photo it names has a stored result. Bad photos get a result with an `error`
and are deleted; transient faults (throttling, timeouts, a crashed decoder) leave the message to come back after an
exponential visibility backoff and, after the queue's maxReceiveCount, land in the DLQ. On SIGTERM the worker
stops receiving, finishes what it holds until shortly before the stop timeout, releases the rest (visibility 0),
flushes results and metrics, clears scale-in protection and exits 0.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from worker.events import Upload, parse_message
from worker.observability import Metrics
from worker.pipeline import Item, Pipeline, in_flight_capacity
from worker.protection import ScaleInProtection
from worker.release import FleetRelease
from worker.results import Result, ResultStore
from worker.settings import Settings

log = logging.getLogger("worker")

OBJECT_MISSING = "object_missing"
MALFORMED_MESSAGE = "malformed_message"


@dataclass
class Job:
    message_id: str
    upload: Upload
    etag: str = ""


@dataclass
class Held:
    """A received message and how many of its photos are still in the pipeline."""

    message_id: str
    receipt: str
    receive_count: int
    pending: int
    extended_at: float = field(default_factory=time.monotonic)
    failed: bool = False


def retry_delay(receive_count: int, base_s: int, cap_s: int) -> int:
    """Visibility before the next attempt: base * 2^(attempt-1), capped (SQS allows at most 12 hours)."""
    return int(min(cap_s, 43_200, base_s * 2 ** max(0, receive_count - 1)))


def is_missing(exc: BaseException) -> bool:
    """The object is gone (deleted before we got to it): a permanent outcome, not a retry."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")
    return False


class Worker:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        *,
        sqs: Any,
        s3: Any,
        store: ResultStore,
        metrics: Metrics,
        protection: ScaleInProtection,
        release: FleetRelease | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.sqs = sqs
        self.s3 = s3
        self.store = store
        self.metrics = metrics
        self.protection = protection
        self.release = release
        self.capacity = in_flight_capacity(settings.batch_size, settings.download_concurrency)
        self.processed = 0
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        self._in_pipeline = 0
        self._releasing = 0  # failed messages between leaving `_held` and their visibility change
        self._downloads = ThreadPoolExecutor(settings.download_concurrency, thread_name_prefix="download")
        self._done: list[list[Item]] = []
        self._done_ready = threading.Condition()

    # --- control ---------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Called from the SIGTERM handler: only sets flags, the main loop does the rest."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    def run(self, max_idle_polls: int | None = None) -> int:
        """Run until SIGTERM (or `max_idle_polls` empty receives in a row, for the demo); returns the exit code."""
        threads = [
            threading.Thread(target=self._infer_loop, name="infer", daemon=True),
            threading.Thread(target=self._results_loop, name="results", daemon=True),
            threading.Thread(target=self._housekeeping_loop, name="housekeeping", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info("worker started", extra={"queue": self.settings.queue_url, "model_version": self.model_version})
        idle = 0
        while not self._stop.is_set():
            got = self._receive_once()
            idle = 0 if got or self._busy() else idle + 1
            if max_idle_polls is not None and idle >= max_idle_polls:
                self.request_stop()
        self._shutdown(threads)
        return 0

    @property
    def model_version(self) -> str:
        return self.pipeline.classifier.version

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._held) or self._releasing > 0

    # --- receiving -------------------------------------------------------------------------------------------

    def _receive_once(self) -> int:
        with self._lock:
            full = self._in_pipeline >= self.capacity
        if full:
            self._stop.wait(0.02)
            return 0
        started = time.monotonic()
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.settings.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.settings.wait_time_s,
                VisibilityTimeout=self.settings.visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except Exception as exc:
            log.warning("receive failed", extra={"reason": str(exc)})
            self.metrics.record_error("receive_failed")
            self._stop.wait(1.0)
            return 0
        messages = response.get("Messages", [])
        if self.release is not None and not self._stop.is_set():
            self.release.after_receive(messages, time.monotonic() - started, self._busy())
        if not messages:
            return 0
        if self._stop.is_set():
            # SIGTERM arrived during the long poll: hand these straight back to other workers.
            self._change_visibility([(m["MessageId"], m["ReceiptHandle"]) for m in messages], 0)
            return 0
        self.protection.update(True)
        for message in messages:
            self._accept(message)
        return len(messages)

    def _accept(self, message: dict[str, Any]) -> None:
        message_id, receipt = message["MessageId"], message["ReceiptHandle"]
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        parsed = parse_message(message.get("Body", ""))
        if parsed.kind in ("test_event", "ignored"):
            log.info("message ignored", extra={"message_id": message_id, "kind": parsed.kind})
            self._delete([(message_id, receipt)])
            return
        if parsed.kind == "malformed":
            # Nothing to key a result on: leave it for the DLQ, where the depth alarm makes someone look at it.
            log.error("malformed message", extra={"message_id": message_id, "reason": parsed.reason})
            self.metrics.record_error(MALFORMED_MESSAGE)
            self._change_visibility([(message_id, receipt)], self._backoff(receive_count))
            return
        with self._lock:
            self._held[message_id] = Held(message_id, receipt, receive_count, len(parsed.uploads))
            self._in_pipeline += len(parsed.uploads)
        for upload in parsed.uploads:
            self._downloads.submit(self._download, Job(message_id, upload, upload.etag))

    def _backoff(self, receive_count: int) -> int:
        return retry_delay(receive_count, self.settings.retry_delay_s, self.settings.visibility_timeout_s)

    def _download(self, job: Job) -> None:
        item = Item(job)
        start = time.perf_counter()
        try:
            response = self.s3.get_object(Bucket=job.upload.bucket, Key=job.upload.key)
            data = response["Body"].read()
            # Classify what is there now; if it was replaced since the event, the result names the new ETag and
            # the newer event's message becomes a duplicate.
            job.etag = str(response.get("ETag", job.etag)).strip('"') or job.etag
        except Exception as exc:
            if self._closing.is_set():
                return  # shut down while this download hung: its message was already released for redelivery
            item.download_ms = (time.perf_counter() - start) * 1000
            if is_missing(exc):
                item.error = OBJECT_MISSING
            else:
                log.warning("download failed", extra={"key": job.upload.key, "reason": str(exc)})
                item.failure = exc
            self.pipeline.put(item)
            return
        if self._closing.is_set():
            return  # likewise: the decode pool is gone and the message is back on the queue
        item.download_ms = (time.perf_counter() - start) * 1000
        self.pipeline.submit(item, data)

    # --- inference and results -------------------------------------------------------------------------------

    def _infer_loop(self) -> None:
        # Once closing, every message still in the pipeline has been released: classifying more would only delay exit.
        while not self._closing.is_set():
            batch = self.pipeline.next_batch(self._closing.is_set)
            if batch is None:
                break
            batch = self.pipeline.infer(batch)
            classified = [i for i in batch if i.prediction is not None]
            if classified:
                self.metrics.record_batch(len(classified), classified[0].infer_ms or 0.0)
            with self._done_ready:
                self._done.append(batch)
                self._done_ready.notify()

    def _results_loop(self) -> None:
        while True:
            with self._done_ready:
                while not self._done and not self._closing.is_set():
                    self._done_ready.wait(0.1)
                # Closing means every message still held was released (or all are done): what is left here
                # belongs to released messages, whose redelivery classifies them again.
                if not self._done or self._closing.is_set():
                    return
                batch = self._done.pop(0)
            self._complete(batch)

    def _result(self, item: Item) -> Result:
        job: Job = item.ref
        timings = {"download_ms": item.download_ms or 0.0, "total_ms": (time.monotonic() - item.started) * 1000}
        if item.decoded is not None:
            timings["decode_ms"] = item.decoded.decode_ms
        if item.infer_ms is not None:
            timings["infer_ms"] = item.infer_ms
        prediction = item.prediction
        return Result(
            bucket=job.upload.bucket,
            upload_key=job.upload.key,
            etag=job.etag,
            model_version=self.model_version,
            label=prediction.label if prediction else None,
            score=prediction.score if prediction else None,
            error=None if prediction else (item.error or "unknown_error"),
            timings={k: round(v, 2) for k, v in timings.items()},
        )

    def _complete(self, batch: list[Item]) -> None:
        """Store the batch's results, then delete the messages whose photos all have one; retry the others."""
        writable = [i for i in batch if i.failure is None]
        results = [self._result(i) for i in writable]
        for item, result, failure in zip(writable, results, self.store.write_many(results), strict=True):
            if failure is not None:
                log.warning("result write failed", extra={"key": result.upload_key, "reason": str(failure)})
                item.failure = failure
        finished: list[tuple[str, str]] = []
        for item in batch:
            decode_ms = item.decoded.decode_ms if item.decoded else None
            kind = item.error or ("retry" if item.failure is not None else None)
            self.metrics.record_image(item.download_ms, decode_ms, kind)
            if item.error and item.failure is None:
                log.info("bad input", extra={"key": item.ref.upload.key, "error": item.error})
            held = self._finish(item.ref, failed=item.failure is not None)
            if held is None:
                continue
            if held.failed:
                try:
                    self._change_visibility([(held.message_id, held.receipt)], self._backoff(held.receive_count))
                finally:
                    with self._lock:
                        self._releasing -= 1
            else:
                finished.append((held.message_id, held.receipt))
        with self._lock:
            self.processed += sum(1 for item in writable if item.failure is None)
        self._delete(finished)

    def _finish(self, job: Job, failed: bool) -> Held | None:
        """Count one photo of a message as done; returns the message once all its photos are."""
        with self._lock:
            self._in_pipeline -= 1
            held = self._held.get(job.message_id)
            if held is None:  # released at shutdown; its result (if any) is stored, and a redelivery skips it
                return None
            held.pending -= 1
            held.failed |= failed
            if held.pending > 0:
                return None
            del self._held[job.message_id]
            if held.failed:
                # Still busy until the retry delay is set: an idle check in between would see no work at all.
                self._releasing += 1
            return held

    # --- SQS housekeeping ------------------------------------------------------------------------------------

    def _delete(self, entries: list[tuple[str, str]]) -> None:
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            try:
                response = self.sqs.delete_message_batch(
                    QueueUrl=self.settings.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r} for i, (_, r) in enumerate(chunk)],
                )
                failed = response.get("Failed", [])
            except Exception as exc:
                failed = [{"Message": str(exc)}]
            if failed:
                # The message comes back; its result is already stored, so the redelivery is a cheap duplicate.
                log.warning("delete failed", extra={"failed": failed})

    def _change_visibility(self, entries: list[tuple[str, str]], seconds: int) -> None:
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            try:
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.settings.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                        for i, (_, r) in enumerate(chunk)
                    ],
                )
            except Exception as exc:
                log.warning("visibility change failed", extra={"reason": str(exc), "seconds": seconds})

    def extend_visibility(self, now: float | None = None) -> int:
        """Keep messages invisible while their photos are still being worked on; returns how many were extended."""
        now = time.monotonic() if now is None else now
        half = self.settings.visibility_timeout_s / 2
        with self._lock:
            due = [h for h in self._held.values() if now - h.extended_at > half]
            for held in due:
                held.extended_at = now
        if due:
            self._change_visibility([(h.message_id, h.receipt) for h in due], self.settings.visibility_timeout_s)
        return len(due)

    def _housekeeping_loop(self) -> None:
        while not self._closing.is_set():
            self.extend_visibility()
            self.protection.update(self._busy())
            self.metrics.flush()
            self._closing.wait(1.0)

    # --- shutdown --------------------------------------------------------------------------------------------

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        started = self._stop_requested_at or time.monotonic()
        # Keep a margin for the release, the result flush and exit before ECS sends SIGKILL.
        margin = min(5.0, self.settings.stop_timeout_s / 3)
        deadline = started + self.settings.stop_timeout_s - margin
        log.info("stopping", extra={"held_messages": len(self._held)})
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            leftover = list(self._held.values())
            self._held.clear()
        if leftover:
            log.info("releasing unfinished messages", extra={"count": len(leftover)})
            self._change_visibility([(h.message_id, h.receipt) for h in leftover], 0)
        self._closing.set()
        self._downloads.shutdown(wait=False, cancel_futures=True)
        # Cancel the queued decodes now (their messages are back on the queue), not after waiting for the threads.
        self.pipeline.close()
        # One budget for all the threads (daemons: one still busy at the end does not hold up the exit), leaving
        # half the margin for the flushes and the exit (`python -m worker` skips the interpreter's teardown).
        joined_by = deadline + margin / 2
        for thread in threads:
            thread.join(timeout=max(0.05, joined_by - time.monotonic()))
        self.store.close()
        self.metrics.flush(force=True)
        self.protection.update(False)
        log.info(
            "stopped",
            extra={
                "processed": self.processed,
                "released": len(leftover),
                "cancelled_decodes": self.pipeline.cancelled_decodes,
            },
        )
