"""The nvJPEG path, exercised on the CPU. Most tests replace torchvision's decoder by a Pillow stand-in with the same
contract (list of 1-D uint8 tensors in, CHW uint8 RGB tensors out, RuntimeError for a bad file), so that they can stall
or fail it at will; one test runs the real torchvision of the worker image (its CPU decoder, same call) to hold the
contract to the library."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from tests.worker.conftest import jpeg
from worker import synthetic
from worker.gpu_decode import GpuDecoder, inspect, orient, resize_crop
from worker.model import load_local
from worker.pipeline import DecodeRates, Item, Pipeline
from worker.train import TrainResult


def _pillow_decode(tensors: list[torch.Tensor]) -> Sequence[torch.Tensor]:
    out = []
    for tensor in tensors:
        try:
            image = Image.open(io.BytesIO(tensor.numpy().tobytes())).convert("RGB")
        except Exception as exc:
            raise RuntimeError(f"nvjpeg stand-in: {exc}") from None
        out.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    return out


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(orientation: int) -> None:
    pixels = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(_png_with_exif(image, exif)))))
    got = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected)


def _png_with_exif(image: Image.Image, exif: Image.Exif) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", exif=exif.tobytes())
    return out.getvalue()


def test_resize_crop_gives_a_square_hwc_uint8_tensor() -> None:
    result = resize_crop(torch.zeros(3, 300, 400, dtype=torch.uint8), 64)
    assert tuple(result.shape) == (64, 64, 3)
    assert result.dtype == torch.uint8


def test_torchvision_decode_jpeg_keeps_the_contract_the_stand_in_assumes() -> None:
    # The image's torchvision (worker/requirements.txt) with device="cpu": the batched call, RGB mode, and a corrupt
    # file failing the batch so that the decoder retries one by one and hands that file back to the CPU path.
    decoder = GpuDecoder(32, torch.device("cpu"))
    photo = jpeg("food", (120, 90), seed=3)
    rotated = synthetic.jpeg_bytes(Image.open(io.BytesIO(photo)), exif_orientation=6)
    files = [(data, inspect(data, 10**8)) for data in (photo, rotated)]
    assert all(candidate is not None for _, candidate in files)
    corrupt = photo[:200]
    images, _ = decoder.decode([*files, (corrupt, files[0][1])])  # type: ignore[list-item]
    assert images[2] is None
    expected = _pillow_decode([torch.frombuffer(bytearray(photo), dtype=torch.uint8)])[0]
    ours = resize_crop(expected, 32)
    assert images[0] is not None
    assert images[0].shape == ours.shape == (32, 32, 3)
    # libjpeg-turbo in both; IDCT and upsampling may differ by a few levels.
    assert float((images[0].float() - ours.float()).abs().mean()) < 3
    assert images[1] is not None
    assert images[1].shape == (32, 32, 3)


def test_only_plain_jpegs_within_the_limit_go_to_the_gpu() -> None:
    assert inspect(jpeg(), 10**8) is not None
    assert inspect(synthetic.jpeg_bytes(Image.new("RGB", (40, 30)), exif_orientation=6), 10**8).orientation == 6  # type: ignore[union-attr]
    assert inspect(jpeg(), 100) is None  # over the pixel limit: the CPU path reports too_many_pixels
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 30)).save(cmyk, format="JPEG")
    assert inspect(cmyk.getvalue(), 10**8) is None
    assert inspect(b"\x89PNG\r\n\x1a\n", 10**8) is None


def test_pipeline_shares_jpegs_between_cpu_and_gpu_and_falls_back_on_rejects(demo_model: TrainResult) -> None:
    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    decoder = GpuDecoder(classifier.input_size, torch.device("cpu"), decode_fn=_pillow_decode)
    pipeline = Pipeline(
        classifier, decode_workers=1, max_pixels=10**8, batch_size=8, batch_timeout_s=0.05, gpu_decoder=decoder
    )
    photos = [jpeg("food" if i % 2 else "other", (320, 240), seed=i) for i in range(12)]
    # A JPEG header the stand-in cannot decode: nvJPEG rejects it, the CPU decoder reports what is wrong.
    broken = photos[0][: len(photos[0]) // 3]
    assert inspect(broken, 10**8) is not None
    try:
        for n, data in enumerate([*photos, broken]):
            pipeline.submit(Item(n), data)
        settled: list[Item] = []
        for _ in range(200):
            batch = pipeline.next_batch(lambda: False, poll_s=0.05)
            assert batch is not None
            settled.extend(pipeline.infer(batch))
            if len(settled) == len(photos) + 1:
                break
    finally:
        pipeline.close()
    by_ref = {item.ref: item for item in settled}
    assert sorted(by_ref) == list(range(len(photos) + 1))  # each photo settled exactly once
    assert all(by_ref[n].prediction is not None for n in range(len(photos)))
    assert any(by_ref[n].tensor is not None for n in range(len(photos)))  # some went through the GPU path
    assert by_ref[len(photos)].prediction is None
    assert by_ref[len(photos)].error == "truncated_image"


def test_gpu_share_follows_the_measured_decode_rates() -> None:
    # Four CPU processes at 20 ms a photo decode 200/s; the GPU at 2 ms a photo 500/s: the GPU takes 5 of every 7.
    assert DecodeRates(cpu_ms=20.0, gpu_ms=2.0).gpu_share(4) == pytest.approx(5 / 7)
    # Until both are measured, the GPU takes everything beyond the CPU's short queue.
    assert DecodeRates(cpu_ms=20.0).gpu_share(4) == 1.0
    assert DecodeRates(gpu_ms=2.0).gpu_share(4) == 1.0


def test_photos_beyond_the_cpu_queue_are_split_by_rate(demo_model: TrainResult) -> None:
    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    decoder = GpuDecoder(classifier.input_size, torch.device("cpu"), decode_fn=_pillow_decode)
    pipeline = Pipeline(
        classifier, decode_workers=4, max_pixels=10**8, batch_size=8, batch_timeout_s=0.05, gpu_decoder=decoder
    )
    try:
        pipeline.rates.cpu_ms, pipeline.rates.gpu_ms = 20.0, 2.0
        turns = [pipeline._gpu_turn() for _ in range(700)]
    finally:
        pipeline.close()
    assert abs(sum(turns) - 500) <= 1  # floating-point credit: at most one turn either way


def test_gpu_decodes_run_on_their_own_thread_while_the_cpu_path_keeps_classifying(demo_model: TrainResult) -> None:
    """The inference thread never waits for nvJPEG: CPU-decoded photos are classified while a GPU decode is stuck."""
    import threading

    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    release = threading.Event()
    threads: list[str] = []

    def stuck_decode(tensors: list[torch.Tensor]) -> Sequence[torch.Tensor]:
        threads.append(threading.current_thread().name)
        release.wait(30)
        return _pillow_decode(tensors)

    decoder = GpuDecoder(classifier.input_size, torch.device("cpu"), decode_fn=stuck_decode)
    assert decoder.stream is None  # no CUDA stream off a GPU
    pipeline = Pipeline(
        classifier, decode_workers=1, max_pixels=10**8, batch_size=4, batch_timeout_s=0.02, gpu_decoder=decoder
    )
    photos = [jpeg("food" if i % 2 else "other", (320, 240), seed=40 + i) for i in range(10)]
    try:
        pipeline.warm_up()
        pipeline.rates.cpu_ms, pipeline.rates.gpu_ms = 10.0, 10.0  # equal rates: beyond the CPU queue, every other
        for n, data in enumerate(photos):
            pipeline.submit(Item(n), data)
        classified: list[Item] = []
        deadline = time.monotonic() + 30
        while not threads or len(classified) < 3:
            assert time.monotonic() < deadline, "CPU-decoded photos waited for the stuck GPU decode"
            batch = pipeline.next_batch(lambda: False, poll_s=0.05)
            assert batch is not None
            classified.extend(i for i in pipeline.infer(batch) if i.prediction is not None)
        assert all(item.tensor is None for item in classified)  # all from the CPU path, the GPU one still stuck
        release.set()
        while len(classified) < len(photos):
            assert time.monotonic() < deadline
            batch = pipeline.next_batch(lambda: False, poll_s=0.05)
            assert batch is not None
            classified.extend(i for i in pipeline.infer(batch) if i.prediction is not None)
    finally:
        release.set()
        pipeline.close()
    assert sorted(item.ref for item in classified) == list(range(len(photos)))
    assert any(item.tensor is not None for item in classified)
    assert set(threads) == {"nvjpeg"}  # never the inference (here: the test's) thread


def test_photos_still_queued_for_the_gpu_at_close_come_back_as_retries(demo_model: TrainResult) -> None:
    import threading

    classifier = load_local(demo_model.out_dir, torch.device("cpu"))
    started, release = threading.Event(), threading.Event()

    def stuck_decode(tensors: list[torch.Tensor]) -> Sequence[torch.Tensor]:
        started.set()
        release.wait(30)
        return _pillow_decode(tensors)

    decoder = GpuDecoder(classifier.input_size, torch.device("cpu"), decode_fn=stuck_decode)
    pipeline = Pipeline(
        classifier, decode_workers=1, max_pixels=10**8, batch_size=1, batch_timeout_s=0.02, gpu_decoder=decoder
    )
    pipeline._cpu_outstanding = 10**6  # as if the CPU queue were full: every photo goes to the GPU
    for n in range(4):
        pipeline.submit(Item(n), jpeg(seed=60 + n))
    assert started.wait(30)
    threading.Timer(0.2, release.set).start()  # the decode in progress finishes; the three queued behind it do not
    pipeline.close()
    settled = [pipeline.ready.get_nowait() for _ in range(pipeline.ready.qsize())]
    retries = [item for item in settled if isinstance(item.failure, CancelledError)]
    assert len(retries) == pipeline.cancelled_decodes == 3
    assert [item.ref for item in settled if item.tensor is not None] == [0]
