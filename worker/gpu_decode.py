"""Optional JPEG decoding on the GPU with nvJPEG (through torchvision), used when the model runs on CUDA.

On a GPU host the CPU decoders bound throughput (see README), so a share of the plain phone JPEGs is decoded in
batches by nvJPEG, from the pipeline's own GPU decode thread and on a CUDA stream of this decoder's own, so that the
model's kernels on the default stream and the decodes overlap; everything else (PNG, HEIC, CMYK, MPO, over the
pixel limit, anything nvJPEG rejects) still goes through the CPU decode pool, which also produces the error codes.
torchvision is imported only here and only when present; the worker never needs it. The decode function is a seam:
tests on a CPU-only machine pass a Pillow stand-in with the same contract, and no stream is made off CUDA.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

_JPEG_SOI = b"\xff\xd8\xff"
_ORIENTATION = 0x0112


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


@dataclass(frozen=True)
class Candidate:
    """A file nvJPEG can take, with the EXIF orientation to apply after decoding."""

    orientation: int


def inspect(data: bytes, max_pixels: int) -> Candidate | None:
    """Read only the header: a single-picture YCbCr or grey JPEG within the pixel limit goes to the GPU."""
    if not data.startswith(_JPEG_SOI):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
                if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                    return None
                if image.width * image.height > max_pixels:
                    return None
                orientation = int(image.getexif().get(_ORIENTATION, 1))
    except Exception:
        return None  # the CPU path will say what is wrong with it
    return Candidate(orientation if 1 <= orientation <= 8 else 1)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a CHW tensor, as Pillow's `exif_transpose` does."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1).flip(-2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-1, -2)
    if orientation == 6:
        return image.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return image.transpose(-1, -2).flip(-1).flip(-2)
    if orientation == 8:
        return image.transpose(-1, -2).flip(-2)
    return image


def resize_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """CHW uint8 -> size x size x 3 uint8 (HWC): shorter side to `size` with antialiasing, centre crop."""
    _, height, width = image.shape
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True)[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    crop = resized[:, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8)
    return crop.permute(1, 2, 0)


DecodeFn = Callable[[list[torch.Tensor]], Sequence[torch.Tensor]]


class GpuDecoder:
    """Batch-decodes JPEG bytes on `device`; a file nvJPEG rejects comes back as None for the CPU path."""

    def __init__(self, size: int, device: torch.device, decode_fn: DecodeFn | None = None) -> None:
        self.size = size
        self.device = device
        self._decode = decode_fn or self._nvjpeg()
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None  # type: ignore[no-untyped-call]

    def _nvjpeg(self) -> DecodeFn:
        from torchvision.io import ImageReadMode, decode_jpeg

        def decode(tensors: list[torch.Tensor]) -> Sequence[torch.Tensor]:
            decoded: Any = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device)
            return list(decoded)

        return decode

    def decode(self, files: Sequence[tuple[bytes, Candidate]]) -> tuple[list[torch.Tensor | None], float]:
        """HWC uint8 tensors (or None per failed file) and the milliseconds the batch took."""
        start = time.perf_counter()
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            out = self._decode_batch(files)
        if self.stream is not None:
            self.stream.synchronize()  # the time must cover the kernels, and the consumer sees finished tensors
        return out, (time.perf_counter() - start) * 1000

    def _decode_batch(self, files: Sequence[tuple[bytes, Candidate]]) -> list[torch.Tensor | None]:
        tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data, _ in files]
        try:
            images: list[torch.Tensor | None] = list(self._decode(tensors))
        except RuntimeError:
            # One bad file fails the whole batched call; retry one by one to find it.
            images = []
            for tensor in tensors:
                try:
                    images.append(self._decode([tensor])[0])
                except RuntimeError:
                    images.append(None)
        out: list[torch.Tensor | None] = []
        for image, (_, candidate) in zip(images, files, strict=True):
            out.append(None if image is None else resize_crop(orient(image, candidate.orientation), self.size))
        return out
