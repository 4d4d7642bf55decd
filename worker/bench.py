"""Worker throughput benchmark: decode-only, model-only and end-to-end images/s on the same generated photos.

    python -m worker.bench [--sizes 4032x3024,2048x2048,1280x960] [--count 16] [--weights DIR] [--json]

End to end runs twice: from bytes in memory through the decode pool, batcher and model (the worker minus AWS), and
through the full worker against a moto server on 127.0.0.1 (S3 download, SQS, DynamoDB, SNS included; moto itself
runs in this process and competes for the same cores, so that figure is a floor). The ratio end-to-end / min(decode,
model) says how close the pipeline gets to its slowest stage. It uses CUDA automatically when present (bf16,
channels_last) and prints the device. Never run as a timed test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker import decode, synthetic
from worker.settings import Settings

# The worker's own default (MLBASE_BATCH_TIMEOUT_MS), so the batches here are the sizes a task runs.
BATCH_TIMEOUT_MS = int(Settings.__dataclass_fields__["batch_timeout_ms"].default)  # type: ignore[arg-type]


@dataclass
class Report:
    device: str
    decode_workers: int
    batch_size: int
    images: int
    sizes: list[str]
    jpeg_quality: int
    single_core_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    decode_images_per_s: float = 0.0
    model_images_per_s: float = 0.0
    e2e_local_images_per_s: float = 0.0
    e2e_moto_images_per_s: float | None = None
    nvjpeg: bool = False
    decode_gpu_images_per_s: float | None = None
    spread: dict[str, list[float]] = field(default_factory=dict)

    @property
    def bound(self) -> float:
        """The slowest stage; with nvJPEG the GPU decodes beside the CPU decoders, so their rates add up."""
        decode_rate = self.decode_images_per_s + (self.decode_gpu_images_per_s or 0.0)
        return min(decode_rate, self.model_images_per_s)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bound_images_per_s"] = round(self.bound, 1)
        data["e2e_local_ratio"] = round(self.e2e_local_images_per_s / self.bound, 3)
        if self.e2e_moto_images_per_s is not None:
            data["e2e_moto_ratio"] = round(self.e2e_moto_images_per_s / self.bound, 3)
        return data


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        width, _, height = part.strip().lower().partition("x")
        sizes.append((int(width), int(height)))
    return sizes


def _photo(args: tuple[str, int, int, int, int]) -> bytes:
    label, width, height, seed, quality = args
    return synthetic.photo(label, width, height, seed, quality)


def generate(sizes: list[tuple[int, int]], count: int, quality: int, workers: int) -> list[bytes]:
    """`count` phone-style JPEGs per size, half of them food, generated in parallel."""
    jobs = [
        (synthetic.LABELS[i % 2], w, h, 1000 * n + i, quality) for n, (w, h) in enumerate(sizes) for i in range(count)
    ]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_photo, jobs))


def single_core_ms(photos: dict[str, bytes], size: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per photo on one core, with and without DCT-domain downscaling."""
    out: dict[str, dict[str, float]] = {}
    for name, data in photos.items():
        draft = statistics.median(decode.decode(data, size, 10**9).decode_ms for _ in range(5))
        full = statistics.median(decode.decode(data, size, 10**9, draft=False).decode_ms for _ in range(3))
        out[name] = {"draft_ms": round(draft, 2), "full_ms": round(full, 2), "speedup": round(full / draft, 2)}
    return out


def _decode_job(args: tuple[bytes, int]) -> bool:
    data, size = args
    return decode.decode(data, size, 10**9).pixels is not None


def decode_throughput(photos: list[bytes], size: int, workers: int, repeat: int) -> float:
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        list(pool.map(_decode_job, [(photos[0], size)] * workers))  # start the processes
        jobs = [(p, size) for p in photos] * repeat
        start = time.perf_counter()
        ok = sum(pool.map(_decode_job, jobs, chunksize=1))
        elapsed = time.perf_counter() - start
    assert ok == len(jobs)
    return len(jobs) / elapsed


def model_throughput(classifier: Any, batch_size: int, seconds: float = 3.0, workers: int | None = None) -> float:
    """Images/s of the model alone, with the torch threads the worker gives it beside `workers` decoders."""
    import torch

    from worker.model import share_cpu_with_decoders

    threads = torch.get_num_threads()
    if workers is not None:
        share_cpu_with_decoders(classifier.device, workers)
    try:
        return _model_rate(classifier, batch_size, seconds)
    finally:
        torch.set_num_threads(threads)


def _model_rate(classifier: Any, batch_size: int, seconds: float) -> float:
    import torch

    size = classifier.input_size
    batch = np.random.default_rng(0).integers(0, 255, (batch_size, size, size, 3), dtype=np.uint8)
    for _ in range(3):
        classifier.probabilities(batch)
    if classifier.device.type == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        classifier.probabilities(batch)  # ends with .cpu(), so each call waits for the GPU
        done += batch_size
    return done / (time.perf_counter() - start)


def gpu_decoder_for(classifier: Any, enabled: bool) -> Any:
    from worker.gpu_decode import GpuDecoder, torchvision_available

    if enabled and classifier.device.type == "cuda" and torchvision_available():
        return GpuDecoder(classifier.input_size, classifier.device)
    return None


def gpu_decode_throughput(decoder: Any, photos: list[bytes], batch_size: int, repeat: int) -> float:
    import torch

    from worker.gpu_decode import inspect

    files = [(p, c) for p in photos if (c := inspect(p, 10**9)) is not None] * repeat
    decoder.decode(files[:batch_size])  # warm-up: nvJPEG handles, kernels
    torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, len(files), batch_size):
        decoder.decode(files[first : first + batch_size])
    torch.cuda.synchronize()
    return len(files) / (time.perf_counter() - start)


def e2e_local(
    classifier: Any, photos: list[bytes], workers: int, batch_size: int, repeat: int, gpu_decoder: Any = None
) -> float:
    import torch

    from worker.model import share_cpu_with_decoders
    from worker.pipeline import Item, Pipeline, in_flight_capacity

    threads = torch.get_num_threads()
    share_cpu_with_decoders(classifier.device, workers)
    pipeline = Pipeline(
        classifier,
        decode_workers=workers,
        max_pixels=10**9,
        batch_size=batch_size,
        batch_timeout_s=BATCH_TIMEOUT_MS / 1000,
        gpu_decoder=gpu_decoder,
    )
    pipeline.warm_up()
    total = len(photos) * repeat
    # Photos in flight are capped as the worker caps them, so the CPU/GPU decode split sees the same steady
    # arrivals as in production rather than one burst of everything (no download threads here).
    capacity = in_flight_capacity(batch_size, 0)
    start = time.perf_counter()
    submitted = finished = 0
    while finished < total:
        while submitted < total and submitted - finished < capacity:
            pipeline.submit(Item(submitted), photos[submitted % len(photos)])
            submitted += 1
        batch = pipeline.next_batch(lambda: False)
        assert batch is not None
        for item in pipeline.infer(batch):
            if item.prediction is None:
                pipeline.close()
                raise RuntimeError(f"photo {item.ref} was not classified: {item.error or item.failure!r}")
            finished += 1
    elapsed = time.perf_counter() - start
    pipeline.close()
    torch.set_num_threads(threads)
    return total / elapsed


def e2e_moto(model_dir: Path, photos: list[bytes], workers: int, batch_size: int) -> float:
    """The whole worker against moto server on loopback, from the first receive to the last result."""
    from moto.server import ThreadedMotoServer

    from worker import events
    from worker.__main__ import build_worker, make_client
    from worker.settings import load_settings

    # The local server's per-request access log would bury the results table.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint, region = f"http://{host}:{port}", "ap-northeast-1"
    # Fake credentials for the local moto server only.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION=region)  # noqa: S106
    try:
        s3, sqs, ddb = (make_client(s, endpoint, region) for s in ("s3", "sqs", "dynamodb"))
        s3.create_bucket(Bucket="bench", CreateBucketConfiguration={"LocationConstraint": region})
        queue = sqs.create_queue(QueueName="bench")["QueueUrl"]
        ddb.create_table(
            TableName="results",
            KeySchema=[{"AttributeName": "upload_key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "upload_key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i, data in enumerate(photos):
            key = f"uploads/bench/{i:05d}.jpg"
            etag = s3.put_object(Bucket="bench", Key=key, Body=data)["ETag"]
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(events.s3_event("bench", key, etag, len(data))))
        settings = load_settings(
            {
                "MLBASE_QUEUE_URL": queue,
                "MLBASE_UPLOAD_BUCKET": "bench",
                "MLBASE_RESULTS_TABLE": "results",
                "MLBASE_MODEL_URI": str(model_dir),
                "MLBASE_ENDPOINT_URL": endpoint,
                "MLBASE_DECODE_WORKERS": str(workers),
                "MLBASE_BATCH_SIZE": str(batch_size),
                "MLBASE_BATCH_TIMEOUT_MS": str(BATCH_TIMEOUT_MS),
                "MLBASE_WAIT_TIME_S": "0",
                "AWS_REGION": region,
            }
        )
        worker = build_worker(settings, metrics_stream=open(os.devnull, "w"))  # noqa: SIM115
        start = time.perf_counter()
        worker.run(max_idle_polls=1)
        elapsed = time.perf_counter() - start
        assert worker.processed == len(photos), f"processed {worker.processed} of {len(photos)}"
        return len(photos) / elapsed
    finally:
        server.stop()


def _model(weights: str | None, tmp: Path) -> tuple[Any, Path]:
    """The given model, or the demo architecture with random weights (speed does not depend on the weights)."""
    from worker.model import ModelMetadata, build_model, load_local, resolve_device, save

    if weights is None:
        metadata = ModelMetadata(version="bench-random", input_size=96, width=16)
        save(build_model(metadata), metadata, tmp / "model")
        weights = str(tmp / "model")
    return load_local(weights, resolve_device("auto")), Path(weights)


def print_table(report: Report) -> None:
    data = report.as_dict()
    nvjpeg = "on" if report.nvjpeg else "off"
    print(f"device: {report.device}; nvJPEG: {nvjpeg}")
    print(f"decode processes: {report.decode_workers}; batch: {report.batch_size}")
    print(f"photos: {report.images} ({', '.join(report.sizes)}; JPEG quality {report.jpeg_quality})")
    print()
    print("| size | draft decode ms (1 core) | full decode ms (1 core) | draft speed-up |")
    print("|---|---:|---:|---:|")
    for name, row in report.single_core_ms.items():
        print(f"| {name} | {row['draft_ms']} | {row['full_ms']} | {row['speedup']}x |")
    print()
    print("| stage | images/s |")
    print("|---|---:|")
    print(f"| decode only ({report.decode_workers} processes, draft; median) | {report.decode_images_per_s:.1f} |")
    if report.decode_gpu_images_per_s is not None:
        print(f"| decode only, nvJPEG on the GPU | {report.decode_gpu_images_per_s:.1f} |")
    print(f"| model only (median) | {report.model_images_per_s:.1f} |")
    print(f"| end to end, local bytes (median) | {report.e2e_local_images_per_s:.1f} |")
    if report.e2e_moto_images_per_s is not None:
        print(f"| end to end, through moto server | {report.e2e_moto_images_per_s:.1f} |")
    print()
    print(f"rounds (images/s): {json.dumps(report.spread)}")
    print(f"end-to-end (local) / min(decode, model) = {data['e2e_local_ratio']:.2f} (decode: CPU plus nvJPEG when on)")
    # Each round measures the three back to back, so its own ratio is less exposed to background load than the
    # ratio of medians taken from different rounds.
    paired = [
        e2e / min(dec + (report.decode_gpu_images_per_s or 0.0), model)
        for dec, model, e2e in zip(
            report.spread["decode"], report.spread["model"], report.spread["e2e_local"], strict=True
        )
    ]
    print(f"per round: {', '.join(f'{r:.2f}' for r in paired)}")
    if "e2e_moto_ratio" in data:
        print(f"end-to-end (moto) / min(decode, model) = {data['e2e_moto_ratio']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--sizes", default="4032x3024,2048x2048,1280x960", help="photo sizes, WxH, comma-separated")
    parser.add_argument("--count", type=int, default=12, help="photos per size")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the photos for decode and local end to end")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds; medians are reported")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the generated photos")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode processes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weights", help="model directory (default: demo architecture, random weights)")
    parser.add_argument("--no-nvjpeg", action="store_true", help="decode on the CPU only, even on a GPU host")
    parser.add_argument("--skip-moto", action="store_true", help="skip the end-to-end run through moto server")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    from worker.model import device_description

    sizes = _parse_sizes(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        classifier, model_dir = _model(args.weights, Path(tmp))
        photos = generate(sizes, args.count, args.quality, args.workers)
        report = Report(
            device=device_description(classifier.device),
            decode_workers=args.workers,
            batch_size=args.batch_size,
            images=len(photos),
            sizes=[f"{w}x{h}" for w, h in sizes],
            jpeg_quality=args.quality,
        )
        samples = {f"{w}x{h}": photos[n * args.count] for n, (w, h) in enumerate(sizes)}
        report.single_core_ms = single_core_ms(samples, classifier.input_size)
        # Alternate the measurements and keep the medians: on a shared machine, background load comes and goes.
        decode_runs, model_runs, e2e_runs = [], [], []
        gpu_decoder = gpu_decoder_for(classifier, not args.no_nvjpeg)
        report.nvjpeg = gpu_decoder is not None
        if gpu_decoder is not None:
            report.decode_gpu_images_per_s = gpu_decode_throughput(gpu_decoder, photos, args.batch_size, args.repeat)
        for _ in range(args.rounds):
            decode_runs.append(decode_throughput(photos, classifier.input_size, args.workers, args.repeat))
            model_runs.append(model_throughput(classifier, args.batch_size, seconds=1.5, workers=args.workers))
            e2e_runs.append(e2e_local(classifier, photos, args.workers, args.batch_size, args.repeat, gpu_decoder))
        report.decode_images_per_s = statistics.median(decode_runs)
        report.model_images_per_s = statistics.median(model_runs)
        report.e2e_local_images_per_s = statistics.median(e2e_runs)
        report.spread = {
            "decode": [round(v, 1) for v in decode_runs],
            "model": [round(v, 1) for v in model_runs],
            "e2e_local": [round(v, 1) for v in e2e_runs],
        }
        if not args.skip_moto:
            report.e2e_moto_images_per_s = e2e_moto(model_dir, photos, args.workers, args.batch_size)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
