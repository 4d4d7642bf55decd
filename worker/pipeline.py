"""Decode pool, batcher and model: the part of the worker that does not know about SQS or S3.

Decoding bounds throughput (see the README), so it runs in a process pool sized to the cores, and the model
consumes whatever is decoded in batches closed by size or by a timeout, whichever comes first. On a GPU host a
share of the plain JPEGs goes to nvJPEG instead, decoded by a thread of its own on a CUDA stream of its own: the
inference thread only ever stacks decoded photos and runs the model, so neither decoder waits for the other.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from worker import decode
from worker.gpu_decode import Candidate, GpuDecoder, inspect
from worker.model import Classifier, Prediction


@dataclass
class Item:
    """One photo moving through the pipeline; `ref` is the caller's handle (an SQS job, a file name)."""

    ref: Any
    download_ms: float | None = None
    decoded: decode.Decoded | None = None
    error: str | None = None  # permanent, machine-readable: becomes the result's `error`
    failure: BaseException | None = None  # transient: the message is retried
    prediction: Prediction | None = None
    infer_ms: float | None = None
    started: float = field(default_factory=time.monotonic)
    tensor: torch.Tensor | None = None  # decoded on the GPU (HWC uint8)

    @property
    def has_image(self) -> bool:
        pixels = self.decoded is not None and self.decoded.pixels is not None
        return self.failure is None and (pixels or self.tensor is not None)


def in_flight_capacity(batch_size: int, download_concurrency: int) -> int:
    """Photos in flight before the worker stops receiving: enough to keep two batches queued behind the model."""
    return max(2 * batch_size, download_concurrency) + 10


def _ewma(previous: float | None, sample: float, weight: float = 0.1) -> float:
    return sample if previous is None else previous + weight * (sample - previous)


@dataclass
class DecodeRates:
    """Moving averages of milliseconds per photo: one CPU decode process, and the GPU decoder per photo of a batch."""

    cpu_ms: float | None = None
    gpu_ms: float | None = None

    def gpu_share(self, cpu_workers: int) -> float:
        """The fraction of photos (beyond the CPU's short queue) the GPU should take; all of them until measured."""
        if self.cpu_ms is None or self.gpu_ms is None:
            return 1.0
        cpu_rate, gpu_rate = cpu_workers / max(self.cpu_ms, 1e-3), 1.0 / max(self.gpu_ms, 1e-3)
        return gpu_rate / (cpu_rate + gpu_rate)


class Pipeline:
    def __init__(
        self,
        classifier: Classifier,
        *,
        decode_workers: int,
        max_pixels: int,
        batch_size: int,
        batch_timeout_s: float,
        draft: bool = True,
        gpu_decoder: GpuDecoder | None = None,
    ) -> None:
        self.classifier = classifier
        self.decode_workers = decode_workers
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.draft = draft
        self.gpu_decoder = gpu_decoder
        self._cpu_outstanding = 0
        self._gpu_outstanding = 0  # queued for nvJPEG or being decoded there
        self._gpu_credit = 0.0
        self.rates = DecodeRates()
        self.ready: queue.Queue[Item] = queue.Queue()
        # Guards the pool reference and the counter only. Never held while anything runs done-callbacks: a pool's
        # shutdown cancels queued decodes, their callbacks (`_decoded`) run in the pool's manager thread and take
        # this lock, and shutdown waits for that thread.
        self._pool_lock = threading.Lock()
        self._closed = False
        self.cancelled_decodes = 0
        self._pool = self._new_pool()
        # Photos for nvJPEG, taken in batches by the GPU decode thread; None tells it to stop.
        self._gpu_queue: queue.Queue[tuple[Item, bytes, Candidate] | None] = queue.Queue()
        self._gpu_thread: threading.Thread | None = None
        if gpu_decoder is not None:
            self._gpu_thread = threading.Thread(target=self._gpu_loop, name="nvjpeg", daemon=True)
            self._gpu_thread.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: children never inherit torch's thread pools or CUDA state from the parent.
        return ProcessPoolExecutor(
            max_workers=self.decode_workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=decode.init_pool_process,
            initargs=(self.max_pixels,),
        )

    def warm_up(self) -> None:
        """Start every decode process and plan every batch shape on the model's device now, not on the first photos."""
        self.classifier.warm_up(self.batch_size)
        futures = [self._pool.submit(decode.is_heif, b"") for _ in range(self.decode_workers)]
        for future in futures:
            future.result()

    def submit(self, item: Item, data: bytes) -> None:
        """Decode `data` (GPU for plain JPEGs when enabled, else the pool); the item lands on `ready`."""
        # The CPU decoders always keep a short queue; beyond it photos are shared in proportion to the measured
        # rates, so that both decoders finish their share of a burst at about the same time.
        if self.gpu_decoder is not None and self._cpu_outstanding >= 2 * self.decode_workers and self._gpu_turn():
            candidate = inspect(data, self.max_pixels)
            if candidate is not None:
                with self._pool_lock:
                    self._gpu_outstanding += 1
                self._gpu_queue.put((item, data, candidate))
                return
        self._submit_cpu(item, data)

    def _gpu_turn(self) -> bool:
        share = self.rates.gpu_share(self.decode_workers)
        self._gpu_credit += share
        if self._gpu_credit >= 1.0:
            self._gpu_credit -= 1.0
            return True
        return False

    def _submit_cpu(self, item: Item, data: bytes) -> None:
        with self._pool_lock:
            pool = self._pool
            self._cpu_outstanding += 1
        try:
            future = pool.submit(decode.decode, data, self.classifier.input_size, self.max_pixels, draft=self.draft)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._replace_pool(pool)
            item.failure = exc
            self.ready.put(item)
            with self._pool_lock:
                self._cpu_outstanding -= 1
            return
        future.add_done_callback(lambda f: self._decoded(item, f, pool))

    def _decoded(self, item: Item, future: Future[decode.Decoded], pool: ProcessPoolExecutor) -> None:
        if future.cancelled():
            # Cancelled at shutdown: its message was already released for redelivery; a retry, never a result.
            item.failure = CancelledError("decode cancelled at shutdown")
        else:
            try:
                item.decoded = future.result()
                item.error = item.decoded.error
                if item.decoded.pixels is not None:
                    self.rates.cpu_ms = _ewma(self.rates.cpu_ms, item.decoded.decode_ms)
            except BaseException as exc:
                # A decoder process died (a crafted file can segfault a codec): retry the photo, replace the pool.
                item.failure = exc
                if isinstance(exc, BrokenProcessPool):
                    self._replace_pool(pool)
        self.ready.put(item)
        # Counted out only once it is on `ready`, so a batch never sees "nothing pending" with a photo in between.
        with self._pool_lock:
            self._cpu_outstanding -= 1
            self.cancelled_decodes += int(future.cancelled())

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._pool_lock:
            if self._pool is broken and not self._closed:
                self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def put(self, item: Item) -> None:
        """An item that needs no decoding (a download error) joins the next batch so its outcome is reported."""
        self.ready.put(item)

    def pending(self) -> int:
        """Photos being decoded (CPU pool or nvJPEG) that have not reached `ready` yet."""
        with self._pool_lock:
            return self._cpu_outstanding + self._gpu_outstanding

    def next_batch(self, should_stop: Callable[[], bool], poll_s: float = 0.05) -> list[Item] | None:
        """Up to `batch_size` decoded items (plus any errors); None once stopped.

        A batch closes when full, when the batch timeout has passed since its first item, or as soon as nothing
        more is being decoded: waiting out the timeout then would only delay photos that are ready.
        """
        first: Item | None = None
        while first is None:
            try:
                first = self.ready.get(timeout=poll_s)
            except queue.Empty:
                if should_stop():
                    return None
        batch = [first]
        images = int(first.has_image)
        deadline = time.monotonic() + self.batch_timeout_s
        while images < self.batch_size:
            remaining = deadline - time.monotonic()
            if self.ready.empty() and self.pending() == 0:
                break
            try:
                item = self.ready.get(timeout=remaining) if remaining > 0 else self.ready.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            images += int(item.has_image)
        return batch

    def infer(self, batch: list[Item]) -> list[Item]:
        """Classify the batch in place; returns it (every item is settled: classified, an error or a retry)."""
        todo = [i for i in batch if i.has_image]
        if todo:
            start = time.perf_counter()
            try:
                predictions = self.classifier.predict(self._stack(todo))
            except Exception as exc:  # e.g. CUDA out of memory: retry these photos later
                for item in todo:
                    item.failure = exc
            else:
                elapsed = (time.perf_counter() - start) * 1000
                for item, prediction in zip(todo, predictions, strict=True):
                    item.prediction = prediction
                    item.infer_ms = elapsed
        return batch

    # --- the GPU decode thread -------------------------------------------------------------------------------

    def _gpu_loop(self) -> None:
        """Decode queued JPEGs on the GPU, as many per call as are waiting (up to a batch), until told to stop."""
        stopping = False
        while not stopping:
            first = self._gpu_queue.get()
            if first is None:
                return
            work = [first]
            while len(work) < self.batch_size:
                try:
                    queued = self._gpu_queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    stopping = True
                    break
                work.append(queued)
            self._decode_on_gpu(work)

    def _cancel_gpu_queue(self) -> None:
        while True:
            try:
                queued = self._gpu_queue.get_nowait()
            except queue.Empty:
                return
            if queued is not None:
                queued[0].failure = CancelledError("GPU decode cancelled at shutdown")
                self.ready.put(queued[0])
                with self._pool_lock:
                    self.cancelled_decodes += 1
                    self._gpu_outstanding -= 1

    def _decode_on_gpu(self, work: list[tuple[Item, bytes, Candidate]]) -> None:
        assert self.gpu_decoder is not None
        try:
            tensors, elapsed = self.gpu_decoder.decode([(data, candidate) for _, data, candidate in work])
        except Exception as exc:
            for item, _, _ in work:
                item.failure = exc
                self.ready.put(item)
            with self._pool_lock:
                self._gpu_outstanding -= len(work)
            return
        self.rates.gpu_ms = _ewma(self.rates.gpu_ms, elapsed / len(work))
        for (item, data, _), tensor in zip(work, tensors, strict=True):
            if tensor is None:
                self._submit_cpu(item, data)  # nvJPEG refused it: the CPU decoder says what is wrong
            else:
                item.tensor = tensor
                item.decoded = decode.Decoded(None, None, elapsed / len(work))
                self.ready.put(item)
        with self._pool_lock:
            self._gpu_outstanding -= len(work)

    def _stack(self, items: list[Item]) -> np.ndarray | torch.Tensor:
        if all(i.tensor is None for i in items):
            return np.stack([i.decoded.pixels for i in items if i.decoded is not None and i.decoded.pixels is not None])
        device = self.classifier.device
        parts = []
        for item in items:
            if item.tensor is not None:
                if item.tensor.is_cuda:
                    # Made on the decoder's stream, read on this one: the allocator must not reuse its memory for
                    # the decoder until this stream's kernels are done with it.
                    item.tensor.record_stream(torch.cuda.current_stream(item.tensor.device))
                parts.append(item.tensor.to(device))
            elif item.decoded is not None and item.decoded.pixels is not None:
                parts.append(torch.from_numpy(item.decoded.pixels).to(device))
        return torch.stack(parts)

    def close(self) -> None:
        """Stop the decoders: queued decodes are cancelled (they come back as retries), running ones finish."""
        with self._pool_lock:
            self._closed = True
            pool = self._pool
        if self._gpu_thread is not None:
            # Photos still queued for nvJPEG are cancelled, like queued CPU decodes (their messages were released);
            # the decode in progress, if any, finishes.
            self._cancel_gpu_queue()
            self._gpu_queue.put(None)
            self._gpu_thread.join(timeout=10)
            self._cancel_gpu_queue()
        # Outside the lock: shutdown runs `_decoded` for every cancelled decode, which takes the lock.
        pool.shutdown(wait=True, cancel_futures=True)
