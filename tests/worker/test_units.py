"""Settings, message parsing, result items, scale-in protection, metrics and the training loop."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.worker.conftest import AgentServer, Stack, jpeg
from worker import decode
from worker.__main__ import make_client
from worker.events import parse_message, s3_event
from worker.model import batch_bucket, load_local
from worker.observability import JsonFormatter, Metrics
from worker.protection import ScaleInProtection
from worker.results import Result, ResultStore
from worker.settings import SettingsError, load_settings
from worker.train import TrainResult

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {
    "MLBASE_QUEUE_URL": "https://sqs.ap-northeast-1.amazonaws.com/111111111111/photos",
    "MLBASE_UPLOAD_BUCKET": "uploads",
    "MLBASE_RESULTS_TABLE": "results",
    "MLBASE_MODEL_URI": "s3://models/food/v1/",
}


def test_settings_defaults() -> None:
    settings = load_settings(REQUIRED)
    assert (settings.batch_size, settings.batch_timeout_ms, settings.download_concurrency) == (32, 200, 16)
    assert (settings.visibility_timeout_s, settings.max_pixels, settings.device) == (300, 40_000_000, "auto")
    assert (settings.worker_name, settings.metrics_namespace, settings.result_ttl_days) == (
        "worker",
        "mlbase/worker",
        30,
    )
    assert settings.results_topic_arn is None
    assert settings.endpoint_url is None
    assert settings.decode_workers >= 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLBASE_QUEUE_URL": ""}, "MLBASE_QUEUE_URL is missing: expected the URL of the SQS queue"),
        ({"MLBASE_BATCH_SIZE": "lots"}, "MLBASE_BATCH_SIZE='lots': expected an integer from 1 to 4096"),
        ({"MLBASE_DEVICE": "tpu"}, "MLBASE_DEVICE='tpu': expected one of auto, cpu, cuda"),
        ({"MLBASE_VISIBILITY_TIMEOUT_S": "5"}, "MLBASE_VISIBILITY_TIMEOUT_S='5': expected an integer from 30 to 43200"),
    ],
)
def test_settings_errors_name_the_variable_the_value_and_what_is_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**REQUIRED, **env})
    assert str(error.value).startswith(message)


def test_bad_setting_exits_non_zero_with_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", **REQUIRED, "MLBASE_BATCH_SIZE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["worker: MLBASE_BATCH_SIZE='0': expected an integer from 1 to 4096"]


def test_s3_event_keys_are_url_decoded() -> None:
    body = json.dumps(s3_event("b", "uploads/u/my photo+1 é.jpg", '"abc"', 10))
    parsed = parse_message(body)
    assert parsed.kind == "uploads"
    assert [(u.bucket, u.key, u.etag, u.size) for u in parsed.uploads] == [
        ("b", "uploads/u/my photo+1 é.jpg", "abc", 10)
    ]


def test_sns_wrapped_event_test_event_and_removals() -> None:
    inner = json.dumps(s3_event("b", "k", "e", 1))
    assert parse_message(json.dumps({"Type": "Notification", "Message": inner})).uploads[0].key == "k"
    assert parse_message(json.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"})).kind == "test_event"
    removed = {"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {}}]}
    assert parse_message(json.dumps(removed)).kind == "ignored"
    assert parse_message("[1, 2]").kind == "malformed"


def test_result_put_is_conditional_on_key_and_etag(stack: Stack) -> None:
    store = ResultStore(make_client("dynamodb", stack.endpoint, "ap-northeast-1"), stack.table, None, None, 30)
    first = Result("b", "uploads/u/k.jpg", "e1", "v1", label="food", score=0.9)
    assert store.write_many([first]) == [None]
    assert store.write_many([Result("b", "uploads/u/k.jpg", "e1", "v2", label="other", score=0.8)]) == [None]
    assert stack.results()["uploads/u/k.jpg"]["model_version"]["S"] == "v1"  # the duplicate did not overwrite
    store.write_many([Result("b", "uploads/u/k.jpg", "e2", "v2", error="truncated_image")])
    item = stack.results()["uploads/u/k.jpg"]
    assert (item["etag"]["S"], item["error"]["S"], item["label"]) == ("e2", "truncated_image", {"NULL": True})
    store.close()


def test_protection_renews_before_expiry_and_is_a_no_op_without_an_agent(ecs_agent: AgentServer) -> None:
    now = [0.0]
    protection = ScaleInProtection(ecs_agent.url, minutes=10, clock=lambda: now[0])
    protection.update(True)
    protection.update(True)  # no change, no request
    now[0] = 301.0  # past half the lifetime
    protection.update(True)
    protection.update(False)
    assert [b["ProtectionEnabled"] for _, _, b in ecs_agent.requests] == [True, True, False]
    silent = ScaleInProtection(None, minutes=10)
    silent.update(True)
    assert silent.enabled


def test_protection_failure_is_logged_not_raised() -> None:
    protection = ScaleInProtection("http://127.0.0.1:9", minutes=10)  # nothing listens on the discard port
    protection.update(True)
    assert not protection.enabled


def test_emf_document_and_error_kinds() -> None:
    stream = io.StringIO()
    metrics = Metrics("ns", "w1", stream=stream)
    metrics.record_image(12.0, 30.0, None)
    metrics.record_image(10.0, None, "truncated_image")
    metrics.record_batch(1, 5.0)
    metrics.flush(force=True)
    main, error = (json.loads(line) for line in stream.getvalue().splitlines())
    definition = main["_aws"]["CloudWatchMetrics"][0]
    assert definition["Namespace"] == "ns"
    assert definition["Dimensions"] == [["Worker"]]
    units = {m["Name"]: m["Unit"] for m in definition["Metrics"]}
    assert units == {
        "Images": "Count",
        "ImagesPerSecond": "Count/Second",
        "BatchSize": "Count",
        "DownloadMs": "Milliseconds",
        "DecodeMs": "Milliseconds",
        "InferMs": "Milliseconds",
    }
    # Raw values, one per photo (or batch), so CloudWatch's percentiles hold across tasks.
    assert (main["Worker"], main["Images"], main["DownloadMs"], main["DecodeMs"]) == ("w1", [2.0], [12.0, 10.0], [30.0])
    assert (main["BatchSize"], main["InferMs"]) == ([1.0], [5.0])
    assert (error["ErrorKind"], error["Errors"]) == ("truncated_image", [1.0])
    assert error["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Worker", "ErrorKind"]]


def test_emf_documents_hold_at_most_100_values_per_metric_and_lose_none() -> None:
    stream = io.StringIO()
    metrics = Metrics("ns", "w1", stream=stream)
    for i in range(250):
        metrics.record_image(float(i), float(i) / 2, None)
    metrics.flush(force=True)
    documents = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(documents) == 3
    assert all(len(d["DownloadMs"]) <= 100 for d in documents)  # the EMF limit per metric and document
    assert [v for d in documents for v in d["DownloadMs"]] == [float(i) for i in range(250)]
    assert [d.get("Images") for d in documents] == [[250.0], None, None]  # counted once


def test_json_log_lines_carry_extra_fields() -> None:
    import logging

    record = logging.LogRecord("worker", logging.INFO, __file__, 1, "bad input", (), None)
    record.key = "uploads/u/x.jpg"
    line = json.loads(JsonFormatter("food-photo").format(record))
    assert (line["level"], line["message"], line["key"], line["service"]) == (
        "INFO",
        "bad input",
        "uploads/u/x.jpg",
        "food-photo",
    )


def test_demo_training_learns_the_generated_task(demo_model: TrainResult) -> None:
    assert demo_model.heldout_accuracy >= 0.85  # chance is 0.5
    metadata = json.loads((demo_model.out_dir / "metadata.json").read_text())
    assert metadata["version"].startswith("demo-")
    assert (demo_model.out_dir / "model.safetensors").is_file()


def test_classify_cli_prints_one_json_line_per_file(demo_model: TrainResult, tmp_path: Path) -> None:
    good, bad = tmp_path / "plate.jpg", tmp_path / "broken.jpg"
    good.write_bytes(jpeg("food", (400, 300), seed=9))
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    command = [sys.executable, "-m", "worker", "classify", "--weights", str(demo_model.out_dir), str(good), str(bad)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good), str(bad)]
    assert lines[0]["label"] == "food"
    assert lines[0]["error"] is None
    assert lines[0]["score"] >= 0.5
    assert lines[1]["label"] is None
    assert lines[1]["error"] in ("truncated_image", "corrupt_image", "not_an_image")
    assert {line["model_version"] for line in lines} == {demo_model.metadata.version}


def test_classify_without_weights_says_so_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "worker", "classify", "--weights", str(tmp_path), "x.jpg"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert len(done.stdout.strip().splitlines()) == 1
    assert "no usable model" in done.stdout
    assert "metadata.json" in done.stdout


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), str(REPO / "worker" / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_worker_image_refuses_ghostscript() -> None:
    # The build fails if Ghostscript is on the image's PATH (see the Dockerfile's install step); the image's packages
    # are the worker lock, which tests/test_dependencies.py ties to the tested versions.
    assert "&& ! command -v gs" in (REPO / "worker" / "Dockerfile").read_text()


def test_fine_tuning_on_an_image_folder_writes_a_model(demo_model: TrainResult, tmp_path: Path) -> None:
    from worker.train import train_folder

    for label in ("food", "other"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            (tmp_path / "data" / label / f"{i}.jpg").write_bytes(jpeg(label, (200, 150), seed=500 + i))
    (tmp_path / "data" / "food" / "notes.txt").write_text("not an image, skipped")
    (tmp_path / "data" / "food" / "broken.jpg").write_bytes(b"\xff\xd8\xff nope")

    result = train_folder(
        tmp_path / "data",
        tmp_path / "out",
        epochs=2,
        version="food-test",
        init_weights=demo_model.out_dir,
        show_progress=False,
    )

    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["version"] == "food-test"
    assert metadata["input_size"] == demo_model.metadata.input_size  # inherited from the starting model
    assert metadata["extra"]["base_version"] == demo_model.metadata.version
    assert 0.0 <= result.heldout_accuracy <= 1.0
    assert (tmp_path / "out" / "model.safetensors").stat().st_size > 10_000


def test_batches_are_padded_to_a_few_fixed_sizes() -> None:
    assert [batch_bucket(n) for n in (1, 2, 3, 4, 5, 27, 128, 129, 256)] == [1, 2, 4, 4, 8, 32, 128, 256, 256]


def test_padding_a_batch_leaves_each_photo_score_unchanged(demo_model: TrainResult) -> None:
    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    labels = ["food", "other", "food", "other", "food"]
    batch = np.stack(
        [decode.decode(jpeg(label, seed=i), classifier.input_size, 10**8).pixels for i, label in enumerate(labels)]
    )
    plain = classifier.probabilities(batch)
    classifier.pad_batches = True  # as on a GPU: 5 photos run as a batch of 8
    padded = classifier.probabilities(batch)
    assert padded.shape == plain.shape
    assert torch.allclose(padded, plain, atol=1e-5)


# Each row: a GPU's compute capability, the precision the model must run in there, and why.
PRECISIONS = [
    ((7, 5), torch.float16, "T4 (g4dn fallback): no native bf16, fast fp16 tensor cores"),
    ((7, 0), torch.float16, "V100: the same"),
    ((8, 6), torch.bfloat16, "A10G (g5): native bf16"),
    ((8, 9), torch.bfloat16, "L4 (g6): native bf16"),
    ((9, 0), torch.bfloat16, "H100/H200: native bf16"),
]


@pytest.mark.parametrize(("capability", "dtype", "why"), PRECISIONS, ids=[row[2].split(" ")[0] for row in PRECISIONS])
def test_precision_follows_the_gpus_capability(capability: tuple[int, int], dtype: torch.dtype, why: str) -> None:
    from worker.model import precision_for

    asked: list[torch.device] = []

    def fake(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    assert precision_for(torch.device("cuda", 0), fake) == dtype, why
    assert asked == [torch.device("cuda", 0)]


def test_cpu_runs_in_float32_whatever_a_gpu_could_do(demo_model: TrainResult) -> None:
    from worker.model import Classifier, build_model, precision_for

    def never(device: torch.device) -> tuple[int, int]:
        raise AssertionError(f"the capability of {device} was asked on the CPU path")

    assert precision_for(torch.device("cpu"), never) is torch.float32
    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    assert classifier.dtype is torch.float32
    model = Classifier(build_model(classifier.metadata), classifier.metadata, torch.device("cpu"), never)
    assert next(model.model.parameters()).dtype is torch.float32


def test_calibration_mix_is_a_phone_camera_roll() -> None:
    from worker.calibrate import PHONE_MIX, mix_with_heic_share, phone_photos

    assert sum(share for share, *_ in PHONE_MIX) == pytest.approx(1.0)
    photos = phone_photos(20, workers=2, scale=0.05)
    heic = [p for p in photos if p[4:12] == b"ftypheic"]
    jpegs = [p for p in photos if p.startswith(b"\xff\xd8\xff")]
    assert len(heic) + len(jpegs) == len(photos) == 20
    assert len(heic) == 4  # 20 % of the mix
    sizes = {decode.decode(p, 64, 10**8).source_size for p in jpegs}
    assert sizes == {(202, 151), (151, 202), (101, 76), (115, 86)}  # 12 MP both ways, 3 MP, 4 MP at 1/20
    jpeg_only = phone_photos(8, workers=1, scale=0.05, mix=mix_with_heic_share(0.0))
    assert all(p.startswith(b"\xff\xd8\xff") for p in jpeg_only)
    assert sum(share for share, *_ in mix_with_heic_share(0.5)) == pytest.approx(1.0)


def test_calibrate_measures_end_to_end_and_prints_the_yaml_line(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from worker import calibrate

    result = calibrate.calibrate(weights=None, photos=10, seconds=0.5, workers=1, batch_size=8, scale=0.1)
    assert result.images_per_second > 0
    assert result.photos >= 11
    assert (result.device.split()[0], result.precision, result.nvjpeg) == ("cpu", "float32", False)
    assert re.fullmatch(
        r"images_per_second_per_task: \d+  # python -m worker calibrate, \d{4}-\d\d-\d\d, cpu \(\d+ threads\),"
        r" 1 decoders, nvJPEG off, 20% HEIC",
        result.yaml_line(),
    )
    assert int(result.yaml_line().split()[1]) == int(result.images_per_second)  # rounded down, never up


def test_calibrate_refuses_a_mix_too_small_to_hold_every_kind() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "calibrate", "--photos", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "python -m worker calibrate: error: --photos must be at least 5 (one of each kind), --seconds positive,"
        " --heic-share from 0 to 1"
    )


def test_a_batch_closes_as_soon_as_nothing_more_is_being_decoded(demo_model: TrainResult) -> None:
    from worker.pipeline import Item, Pipeline

    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    pipeline = Pipeline(classifier, decode_workers=1, max_pixels=10**8, batch_size=8, batch_timeout_s=30.0)
    try:
        pipeline.warm_up()
        for n in range(3):
            pipeline.submit(Item(n), jpeg(seed=80 + n))
        started = time.monotonic()
        batch = pipeline.next_batch(lambda: False)
        waited = time.monotonic() - started
    finally:
        pipeline.close()
    assert batch is not None
    # The three decodes were still running when the batch opened; it took them all, then closed at once rather
    # than waiting out the 30 s timeout for photos nobody was decoding.
    assert sorted(item.ref for item in batch) == [0, 1, 2]
    assert waited < 10
    assert pipeline.pending() == 0
