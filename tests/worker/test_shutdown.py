"""SIGTERM handling: the worker process stops receiving, finishes or releases what it holds, and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
