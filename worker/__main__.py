"""Command line of the worker image and of local use.

python -m worker [run]                              the queue worker (settings from MLBASE_* variables)
python -m worker classify --weights DIR FILE...     classify local files, one JSON object per line
python -m worker train DATA_DIR --out DIR           fine-tune on DATA_DIR/food/ and DATA_DIR/other/
python -m worker train --demo OUT_DIR               train the demo model on generated photos
python -m worker calibrate [--weights DIR]          measure photos/s here; print the YAML's images_per_second_per_task
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from worker.release import FleetRelease
    from worker.runner import Worker
    from worker.settings import Settings


def make_client(service: str, endpoint_url: str | None, region: str | None, pool: int = 10) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=pool, connect_timeout=5)
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)  # type: ignore[call-overload]


def build_worker(
    settings: Settings,
    *,
    s3: Any = None,
    dynamodb: Any = None,
    metrics_stream: IO[str] | None = None,
) -> Worker:
    """Wire clients, model, decode pool and result store into a `Worker` (clients may be injected by tests).

    Raises `ModelError` when the model cannot be loaded.
    """
    from worker.gpu_decode import GpuDecoder, torchvision_available
    from worker.model import device_description, load_classifier, resolve_device, share_cpu_with_decoders
    from worker.observability import Metrics
    from worker.pipeline import Pipeline
    from worker.protection import ScaleInProtection
    from worker.results import ResultStore
    from worker.runner import Worker

    pool = settings.download_concurrency + 4
    s3 = s3 or make_client("s3", settings.endpoint_url, settings.region, pool)
    classifier = load_classifier(settings.model_uri, resolve_device(settings.device), s3)
    share_cpu_with_decoders(classifier.device, settings.decode_workers)
    logging.getLogger("worker").info(
        "model loaded",
        extra={
            "model_version": classifier.version,
            "device": device_description(classifier.device),
            "precision": str(classifier.dtype).removeprefix("torch."),
        },
    )
    gpu_decoder = None
    if settings.gpu_decode == "auto" and classifier.device.type == "cuda" and torchvision_available():
        gpu_decoder = GpuDecoder(classifier.input_size, classifier.device)
    pipeline = Pipeline(
        classifier,
        decode_workers=settings.decode_workers,
        max_pixels=settings.max_pixels,
        batch_size=settings.batch_size,
        batch_timeout_s=settings.batch_timeout_ms / 1000,
        gpu_decoder=gpu_decoder,
    )
    pipeline.warm_up()
    store = ResultStore(
        dynamodb or make_client("dynamodb", settings.endpoint_url, settings.region, 20),
        settings.results_table,
        make_client("sns", settings.endpoint_url, settings.region, 20) if settings.results_topic_arn else None,
        settings.results_topic_arn,
        settings.result_ttl_days,
    )
    sqs = make_client("sqs", settings.endpoint_url, settings.region)
    return Worker(
        settings,
        pipeline,
        sqs=sqs,
        s3=s3,
        store=store,
        metrics=Metrics(settings.metrics_namespace, settings.worker_name, stream=metrics_stream),
        protection=ScaleInProtection(settings.ecs_agent_uri, settings.protection_minutes),
        release=build_release(settings, sqs),
    )


def build_release(settings: Settings, sqs: Any) -> FleetRelease | None:
    """The fleet release of `wake: sla` (worker/release.py), when the construct named the host group and the task
    metadata names this task's service."""
    from worker.release import FleetRelease, ReleaseRule, task_identity

    if not settings.release_host_group:
        return None
    identity = task_identity(settings.ecs_metadata_uri)
    if identity is None:
        return None
    rule = ReleaseRule(
        host_group=settings.release_host_group,
        caught_up_messages=settings.release_caught_up_messages,
        max_age_s=settings.release_max_age_s,
        slow_per_minute=settings.release_slow_per_minute,
        empty_wait_s=settings.wait_time_s,
    )
    return FleetRelease(
        rule,
        identity,
        queue_url=settings.queue_url,
        sqs=sqs,
        ecs=make_client("ecs", settings.endpoint_url, settings.region),
        autoscaling=make_client("autoscaling", settings.endpoint_url, settings.region),
    )


def run(max_idle_polls: int | None = None) -> int:
    from worker.model import ModelError
    from worker.observability import configure_logging
    from worker.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.worker_name, settings.log_level)
    try:
        worker = build_worker(settings)
    except ModelError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    signal.signal(signal.SIGINT, lambda *_: worker.request_stop())
    code: int = worker.run(max_idle_polls=max_idle_polls)
    return code


def classify(weights: str, files: Sequence[str], max_pixels: int, device: str) -> int:
    from worker import decode
    from worker.model import ModelError, load_local, resolve_device

    try:
        classifier = load_local(weights, resolve_device(device))
    except ModelError as exc:
        print(f"worker classify: no usable model: {exc} (train one with `python -m worker train --demo DIR`)")
        return 1
    for name in files:
        path = Path(name)
        record: dict[str, object]
        try:
            data = path.read_bytes()
        except OSError as exc:
            record = {"file": name, "label": None, "score": None, "error": "unreadable_file", "detail": exc.strerror}
        else:
            decoded = decode.decode(data, classifier.input_size, max_pixels)
            record = {"file": name, "label": None, "score": None, "error": decoded.error}
            if decoded.pixels is not None:
                prediction = classifier.predict(decoded.pixels[None])[0]
                record.update(label=prediction.label, score=prediction.score)
        record["model_version"] = classifier.version
        print(json.dumps(record), flush=True)
    return 0


def train(args: argparse.Namespace) -> int:
    from worker.train import train_demo, train_folder

    if args.demo:
        result = train_demo(args.demo, samples=args.samples, epochs=args.epochs or 4)
    else:
        if not args.data_dir or not args.out:
            print("worker train: give DATA_DIR and --out DIR, or --demo OUT_DIR")
            return 2
        result = train_folder(args.data_dir, args.out, epochs=args.epochs or 10, init_weights=args.weights)
    print(
        json.dumps(
            {
                "out_dir": str(result.out_dir),
                "model_version": result.metadata.version,
                "train_accuracy": round(result.train_accuracy, 4),
                "heldout_accuracy": round(result.heldout_accuracy, 4),
                "seconds": round(result.seconds, 1),
            }
        )
    )
    return 0


def main(argv: Sequence[str] | None = None, *, end_process_after_run: bool = False) -> int:
    """Dispatch the command line; with `end_process_after_run` (the program itself) the queue worker's process ends
    through `exit_promptly` once `run` returns."""
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the queue worker (default)")
    p_classify = sub.add_parser("classify", help="classify local image files")
    p_classify.add_argument("--weights", required=True, help="model directory (metadata.json + weights)")
    p_classify.add_argument("--max-pixels", type=int, default=40_000_000)
    p_classify.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p_classify.add_argument("files", nargs="+")
    p_train = sub.add_parser("train", help="train or fine-tune the classifier")
    p_train.add_argument("data_dir", nargs="?", help="folder with food/ and other/ subfolders")
    p_train.add_argument("--out", help="where to write the model")
    p_train.add_argument("--demo", metavar="OUT_DIR", help="train the demo model on generated photos")
    p_train.add_argument("--weights", help="start from this model directory")
    p_train.add_argument("--epochs", type=int)
    p_train.add_argument("--samples", type=int, default=600, help="generated photos for --demo")
    p_calibrate = sub.add_parser("calibrate", help="measure end-to-end photos/s on this host for the worker YAML")
    p_calibrate.add_argument("--weights", help="model directory (default: the demo architecture, random weights)")
    p_calibrate.add_argument("--photos", type=int, default=48, help="distinct generated photos in the mix")
    p_calibrate.add_argument("--seconds", type=float, default=20.0, help="measure for at least this long")
    p_calibrate.add_argument("--workers", type=int, help="decode processes (default: one per core, as the worker)")
    p_calibrate.add_argument("--batch-size", type=int, default=64)
    p_calibrate.add_argument("--heic-share", type=float, default=0.2, help="share of HEIC photos in the mix, 0..1")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        from worker import calibrate

        if args.photos < 5 or args.seconds <= 0 or not 0 <= args.heic_share <= 1:
            p_calibrate.error(
                "--photos must be at least 5 (one of each kind), --seconds positive, --heic-share from 0 to 1"
            )
        return calibrate.main(args.weights, args.photos, args.seconds, args.workers, args.batch_size, args.heic_share)
    if args.command == "classify":
        return classify(args.weights, args.files, args.max_pixels, args.device)
    if args.command == "train":
        return train(args)
    code = run()
    if end_process_after_run:
        exit_promptly(code)
    return code


def exit_promptly(code: int) -> NoReturn:
    """End the queue worker's process once `run` has returned, without the interpreter's teardown.

    By then every message is deleted or back on the queue, results and metrics are flushed and scale-in protection
    is off; what is left is the teardown of torch and the other extensions, about half a second on a small host
    (measured on two cores), which the stop timeout would otherwise have to leave room for. Logs are flushed first.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(end_process_after_run=True))
