"""SIGTERM handling: the worker process stops receiving, finishes or releases what it holds, and exits 0."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.worker.conftest import Stack, jpeg, run_worker
from worker.__main__ import make_client
from worker.train import TrainResult

REPO = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-1"


def test_sigterm_mid_batch_loses_no_message_and_duplicates_no_result(stack: Stack, demo_model: TrainResult) -> None:
    keys = [f"uploads/u9/{i:03d}.jpg" for i in range(40)]
    for i, key in enumerate(keys):
        stack.upload(key, jpeg("food" if i % 2 else "other", (320, 240), seed=100 + i))
    env = {
        **os.environ,
        **stack.env(demo_model.out_dir, MLBASE_BATCH_SIZE="4", MLBASE_DOWNLOAD_CONCURRENCY="2"),
        "PYTHONPATH": str(REPO),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not stack.results() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert stack.results(), "the worker stored no result within 60 s"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode()[-2000:]
    assert b'"message": "stopped"' in output
    loaded = next(json.loads(line) for line in output.splitlines() if b'"message": "model loaded"' in line)
    assert (loaded["precision"], loaded["device"].split()[0]) == ("float32", "cpu")  # chosen and logged at start

    first = set(stack.results())
    assert 0 < len(first) < len(keys)  # it stopped part-way through the queue
    run_worker(stack, demo_model.out_dir)  # a replacement task drains the rest

    assert sorted(stack.results()) == keys
    published = sorted(n["upload_key"] for n in stack.notifications())
    assert published == keys  # each result announced exactly once
    assert stack.drain(stack.queue_url) == []
    assert stack.drain(stack.dlq_url) == []


def test_work_still_in_hand_at_the_stop_deadline_is_released_at_once(stack: Stack, demo_model: TrainResult) -> None:
    for i in range(3):
        stack.upload(f"uploads/u8/{i}.jpg", jpeg(seed=i))
    s3 = make_client("s3", stack.endpoint, REGION)
    s3.meta.events.register("before-send.s3.GetObject", lambda **_: time.sleep(4))  # a download that hangs
    started = time.monotonic()
    run_worker(stack, demo_model.out_dir, s3=s3, stop_after=1.0, MLBASE_STOP_TIMEOUT_S="3")
    elapsed = time.monotonic() - started
    assert elapsed < 10
    assert stack.results() == {}
    assert len(stack.drain(stack.queue_url)) == 3  # visible again straight away, not after the 60 s timeout


def _large_png() -> bytes:
    """A 4000x3000 PNG (a 12 MP phone picture's size) that compresses small but costs a full decode: 60 of them take
    one decoder well past the 3 s deadline even on an idle machine (3000x2250 ones could all finish in time)."""
    ramp = np.linspace(0, 255, 4000, dtype=np.uint8)[None, :].repeat(3000, 0)
    pixels = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 90)], axis=-1)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def test_decodes_still_queued_at_the_stop_deadline_exit_0_in_time_and_lose_nothing(
    stack: Stack, demo_model: TrainResult
) -> None:
    """The drill: one decoder, 60 12 MP PNGs in hand, a 3 s stop timeout; the deadline falls with decodes queued."""
    data = _large_png()
    keys = [f"uploads/u7/{i:03d}.png" for i in range(60)]
    for key in keys:
        stack.upload(key, data)
    env = {
        **os.environ,
        **stack.env(
            demo_model.out_dir,
            MLBASE_STOP_TIMEOUT_S="3",
            MLBASE_BATCH_SIZE="32",  # room for all 60 photos in hand at once
            MLBASE_DOWNLOAD_CONCURRENCY="8",
        ),
        "PYTHONPATH": str(REPO),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    # Its own process group, so that a hung worker and its decode processes (which hold the pipe) can all be killed.
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not stack.results() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert stack.results(), "the worker stored no result within 60 s"
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError("the worker hung at shutdown: " + output.decode()[-2000:]) from None
        stopped_in = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output.decode()[-2000:]
    # Within the stop timeout, so ECS never needs SIGKILL.
    assert stopped_in < 3.0, f"stopped {stopped_in:.2f} s after SIGTERM"
    stopped = next(json.loads(line) for line in output.splitlines() if b'"message": "stopped"' in line)
    assert stopped["cancelled_decodes"] > 0, "the drill must reach the deadline with decodes still queued"
    assert stopped["released"] > 0

    stored = set(stack.results())
    visible = {json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in stack.drain(stack.queue_url)}
    assert stored | visible == set(keys)  # each photo has a result or its message is back on the queue
    assert stack.drain(stack.dlq_url) == []
