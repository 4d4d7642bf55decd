"""Measure this host's end-to-end photos/s and print the `images_per_second_per_task` line for the worker YAML.

    python -m worker calibrate [--weights DIR] [--photos 48] [--seconds 20] [--workers N]

Run it inside the worker image on the instance type the YAML names (first in `capacity.instance_types`), with the
settings the task has (its cores as `--workers`, its GPU). It feeds a phone camera-roll mix through the decode pool,
batcher and model exactly as the worker does (no S3 or SQS: those are parallel downloads, not the bound): 12 MP
JPEGs (4032x3024), 3-4 MP JPEGs (2016x1512, 2304x1728) and 12 MP HEICs, portrait and landscape. The value drives the
SLA scaling: the backlog-per-task target and the step policy thresholds are computed from it (see
`cdk_constructs/sla_scaling.py`), so a value above what a task really does lets the backlog outgrow the SLA.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import platform
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from worker import synthetic

# (share of the mix, width, height, format): what phones upload, by the sizes their cameras and share sheets use.
PHONE_MIX: tuple[tuple[float, int, int, str], ...] = (
    (0.30, 4032, 3024, "JPEG"),  # 12 MP main camera
    (0.15, 3024, 4032, "JPEG"),  # the same, portrait
    (0.20, 2016, 1512, "JPEG"),  # 3 MP: "reduced" size, messaging apps
    (0.15, 2304, 1728, "JPEG"),  # 4 MP: older phones, front cameras
    (0.20, 4032, 3024, "HEIF"),  # iPhone default: HEIC
)


@dataclass(frozen=True)
class Calibration:
    heic_share: float
    images_per_second: float
    photos: int
    seconds: float
    device: str
    precision: str
    decode_workers: int
    nvjpeg: bool

    def yaml_line(self) -> str:
        """The line to paste into `scaling:` of the worker YAML; rounded down, never up."""
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        return (
            f"images_per_second_per_task: {math.floor(self.images_per_second)}"
            f"  # python -m worker calibrate, {when}, {self.device}, {self.decode_workers} decoders,"
            f" nvJPEG {'on' if self.nvjpeg else 'off'}, {self.heic_share:.0%} HEIC"
        )


def _photo(job: tuple[int, float, int, int, str]) -> bytes:
    index, scale, width, height, fmt = job
    label = synthetic.LABELS[index % 2]
    width, height = max(16, round(width * scale)), max(16, round(height * scale))
    data = synthetic.photo(label, width, height, seed=7000 + index, quality=88)
    if fmt == "JPEG":
        return data
    from PIL import Image

    from worker import decode  # noqa: F401 - registers the HEIF plugin

    # Quality 50 gives about 1.6 MB for 12 MP of these noisy pictures, the size of a real iPhone HEIC.
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, format=fmt, quality=50)
    return out.getvalue()


def mix_with_heic_share(heic_share: float) -> tuple[tuple[float, int, int, str], ...]:
    """`PHONE_MIX` with HEICs at `heic_share` (0..1) and the JPEG kinds scaled to fill the rest."""
    jpeg_total = sum(share for share, *_, fmt in PHONE_MIX if fmt != "HEIF")
    return tuple(
        (heic_share if fmt == "HEIF" else share * (1 - heic_share) / jpeg_total, w, h, fmt)
        for share, w, h, fmt in PHONE_MIX
    )


def phone_photos(
    count: int, workers: int, scale: float = 1.0, mix: tuple[tuple[float, int, int, str], ...] = PHONE_MIX
) -> list[bytes]:
    """`count` photos in `mix` proportions (a kind with a share gets at least one), generated in parallel."""
    kinds = [(share, w, h, fmt) for share, w, h, fmt in mix if share > 0]
    counts = [max(1, round(share * count)) for share, *_ in kinds]
    jobs: list[tuple[int, float, int, int, str]] = []
    for (_, width, height, fmt), n in zip(kinds, counts, strict=True):
        jobs.extend((len(jobs) + i, scale, width, height, fmt) for i in range(n))
    # Shuffled (reproducibly), so every stretch of the run sees the whole mix.
    random.Random(0).shuffle(jobs)
    # forkserver: never fork a process that may already hold CUDA state.
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("forkserver")) as pool:
        return list(pool.map(_photo, jobs))


def calibrate(
    *,
    weights: str | None,
    photos: int,
    seconds: float,
    workers: int,
    batch_size: int,
    scale: float = 1.0,
    heic_share: float = 0.2,
) -> Calibration:
    import tempfile
    from pathlib import Path

    from worker import bench
    from worker.model import device_description

    mix = phone_photos(photos, workers, scale, mix_with_heic_share(heic_share))
    with tempfile.TemporaryDirectory() as tmp:
        classifier, _ = bench._model(weights, Path(tmp))
        gpu_decoder = bench.gpu_decoder_for(classifier, enabled=True)
        # One short pass first: process start-up and the model's first batches are not part of the steady rate.
        bench.e2e_local(classifier, mix[: max(1, len(mix) // 4)], workers, batch_size, 1, gpu_decoder)
        repeat, done, elapsed = 1, 0, 0.0
        while elapsed < seconds:
            count = len(mix) * repeat
            rate = bench.e2e_local(classifier, mix, workers, batch_size, repeat, gpu_decoder)  # excludes warm-up
            elapsed += count / rate
            done += count
            repeat *= 2
        return Calibration(
            heic_share=heic_share,
            images_per_second=done / elapsed,
            photos=done,
            seconds=elapsed,
            device=device_description(classifier.device),
            precision=str(classifier.dtype).removeprefix("torch."),
            decode_workers=workers,
            nvjpeg=gpu_decoder is not None,
        )


def main(
    weights: str | None, photos: int, seconds: float, workers: int | None, batch_size: int, heic_share: float
) -> int:
    workers = workers or os.cpu_count() or 1
    result = calibrate(
        weights=weights,
        photos=photos,
        seconds=seconds,
        workers=workers,
        batch_size=batch_size,
        heic_share=heic_share,
    )
    print(
        f"measured {result.images_per_second:.1f} photos/s end to end over {result.photos} photos in"
        f" {result.seconds:.1f} s on {platform.node() or 'this host'}: {result.device}, {result.precision},"
        f" {result.decode_workers} decode processes, nvJPEG {'on' if result.nvjpeg else 'off'},"
        f" {result.heic_share:.0%} HEIC"
    )
    print("put this under `scaling:` in the worker YAML (config/workers/<name>.yaml):")
    print(f"  {result.yaml_line()}")
    return 0
