"""Decoding: one test per kind of bad or unusual file a phone (or an attacker) can send."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker import decode, synthetic

SIZE = 64
LIMIT = 4_000_000


def _encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def _decode(data: bytes, max_pixels: int = LIMIT) -> decode.Decoded:
    return decode.decode(data, SIZE, max_pixels)


def test_phone_jpeg_decodes_to_a_square_rgb_array() -> None:
    result = _decode(synthetic.photo("food", 1600, 1200, seed=1))
    assert result.error is None
    assert result.pixels is not None
    assert result.pixels.shape == (SIZE, SIZE, 3)
    assert result.pixels.dtype == np.uint8
    assert result.source_size == (1600, 1200)


def test_draft_decoding_matches_full_decoding_closely() -> None:
    data = synthetic.photo("other", 2048, 1536, seed=2)
    fast, full = decode.decode(data, SIZE, LIMIT), decode.decode(data, SIZE, LIMIT, draft=False)
    assert fast.pixels is not None
    assert full.pixels is not None
    assert np.abs(fast.pixels.astype(int) - full.pixels.astype(int)).mean() < 6


def test_exif_orientation_is_applied() -> None:
    # Left half red, right half blue; orientation 6 means "rotate 90 degrees clockwise to display".
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :100] = (255, 0, 0)
    pixels[:, 100:] = (0, 0, 255)
    data = synthetic.jpeg_bytes(Image.fromarray(pixels), exif_orientation=6)
    result = decode.decode(data, 32, LIMIT)
    assert result.pixels is not None
    top, bottom = result.pixels[2, 16], result.pixels[-3, 16]
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60


def test_empty_object() -> None:
    assert _decode(b"").error == "empty_object"


def test_truncated_jpeg() -> None:
    data = synthetic.photo("food", 800, 600, seed=3)
    assert _decode(data[: len(data) // 3]).error == "truncated_image"


def test_not_an_image() -> None:
    assert _decode(b"%PDF-1.7 definitely a document").error == "not_an_image"


@pytest.mark.parametrize("pixels", [LIMIT + 1, LIMIT * 3], ids=["just-over-limit", "decompression-bomb"])
def test_over_the_pixel_limit(pixels: int) -> None:
    # Pillow only warns below twice its limit; the worker treats the warning as the error it is.
    data = _encode(Image.new("L", (pixels // 1000 + 1, 1000)), "PNG")
    assert _decode(data).error == "too_many_pixels"


def test_animated_gif() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert _decode(data).error == "multi_frame_image"


def test_multi_page_tiff() -> None:
    pages = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    assert _decode(_encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])).error == "multi_frame_image"


def test_mpo_from_a_phone_uses_the_primary_picture() -> None:
    pictures = [Image.new("RGB", (80, 60), "red"), Image.new("RGB", (80, 60), "blue")]
    result = _decode(_encode(pictures[0], "MPO", save_all=True, append_images=pictures[1:]))
    assert result.error is None
    assert result.pixels is not None
    assert result.pixels[..., 0].mean() > 200


def test_cmyk_jpeg_becomes_rgb() -> None:
    result = _decode(_encode(Image.new("CMYK", (80, 60), (0, 255, 255, 0)), "JPEG"))  # pure red ink
    assert result.pixels is not None
    assert result.pixels[..., 0].mean() > 200
    assert result.pixels[..., 1].mean() < 60


def test_16_bit_png_is_scaled_not_clipped() -> None:
    image = Image.fromarray(np.full((60, 80), 32768, np.uint16))
    result = _decode(_encode(image, "PNG"))
    assert result.pixels is not None
    assert 120 <= int(result.pixels.mean()) <= 135  # mid-grey, not saturated white


def test_alpha_is_composited_over_white() -> None:
    result = _decode(_encode(Image.new("RGBA", (80, 60), (0, 0, 0, 0)), "PNG"))
    assert result.pixels is not None
    assert result.pixels.min() == 255


def test_heic_without_a_decoder() -> None:
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(256)
    assert _decode(data).error == "heic_unsupported"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff" + bytes(100),
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        b"GIF89a" + bytes(5),
        b"RIFF\0\0\0\0WEBP" + bytes(9),
    ],
    ids=["jpeg", "png", "gif", "webp"],
)
def test_an_image_signature_with_nothing_readable_behind_it_is_a_corrupt_image(data: bytes) -> None:
    assert _decode(data).error == "corrupt_image"


def test_text_is_not_an_image() -> None:
    assert _decode(b"hello, this is a text file\n" * 10).error == "not_an_image"


def test_corrupt_header_never_raises() -> None:
    data = synthetic.photo("food", 320, 240, seed=4)
    mangled = data[:200] + bytes(len(data) - 200)
    assert _decode(mangled).error in ("corrupt_image", "truncated_image")
