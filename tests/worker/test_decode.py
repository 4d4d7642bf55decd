"""Decoding: one test per kind of bad or unusual file a phone (or an attacker) can send."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_tool
from worker import decode, synthetic

SIZE = 64
LIMIT = 4_000_000
REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("pixels", [LIMIT + 1, LIMIT * 3], ids=["just-over-limit", "decompression-bomb"])
def test_over_the_pixel_limit(pixels: int) -> None:
    # Pillow only warns below twice its limit; the worker treats the warning as the error it is.
    data = _encode(Image.new("L", (pixels // 1000 + 1, 1000)), "PNG")
    assert _decode(data).error == "too_many_pixels"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_image(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green")]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)
    assert _decode(data).error == "multi_frame_image"


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


def test_heic_without_a_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "FORMATS", tuple(f for f in decode.FORMATS if f != "HEIF"))
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(256)
    assert _decode(data).error == "heic_unsupported"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff" + bytes(100),
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        b"RIFF\0\0\0\0WEBP" + bytes(9),
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(256),
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(256),
    ],
    ids=["jpeg", "png", "webp", "heic", "avif"],
)
def test_an_image_signature_with_nothing_readable_behind_it_is_a_corrupt_image(data: bytes) -> None:
    assert _decode(data).error == "corrupt_image"


def test_text_is_not_an_image() -> None:
    assert _decode(b"hello, this is a text file\n" * 10).error == "not_an_image"


def test_corrupt_header_never_raises() -> None:
    data = synthetic.photo("food", 320, 240, seed=4)
    mangled = data[:200] + bytes(len(data) - 200)
    assert _decode(mangled).error in ("corrupt_image", "truncated_image")


# --- formats outside the allow-list ----------------------------------------------------------------------------

# A real EPS: Pillow's EPS plugin would identify it and, where `gs` is installed, render it with Ghostscript.
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0.8 0.4 0.1 setrgbcolor 0 0 64 64 rectfill\nshowpage\n%%EOF\n"
)
# DOS EPS: a binary header in front of the PostScript section.
DOS_EPS = b"\xc5\xd0\xd3\xc6" + (30).to_bytes(4, "little") + len(EPS).to_bytes(4, "little") + bytes(18) + EPS
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 64 64]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
PICTURE = Image.new("RGB", (32, 24), "orange")

# Each row: a file whose content is not one of the allowed formats, and why it must never be parsed.
REFUSED = [
    ("postscript", EPS.replace(b"EPSF-3.0", b""), "PostScript is a program: Ghostscript would run it"),
    ("eps", EPS, "Encapsulated PostScript: Pillow renders it with Ghostscript"),
    ("dos-eps", DOS_EPS, "the binary EPS header in front of the same PostScript"),
    ("pdf", PDF, "a document; Pillow's PDF support is write-only, a delegate would have to render it"),
    ("gif", _encode(PICTURE, "GIF"), "not accepted by the upload API; phones do not shoot GIF"),
    ("tiff", _encode(PICTURE, "TIFF"), "libtiff and its many codecs: a wide decoder surface for no phone photo"),
    ("bmp", _encode(PICTURE, "BMP"), "not accepted by the upload API"),
    ("jpeg2000", _encode(PICTURE, "JPEG2000"), "OpenJPEG: not accepted by the upload API"),
    ("ico", _encode(PICTURE, "ICO"), "embeds PNG or BMP; not accepted by the upload API"),
]


@pytest.mark.parametrize(("data", "reason"), [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED])
def test_formats_outside_the_allow_list_are_refused_without_consulting_their_plugin(
    monkeypatch: pytest.MonkeyPatch, data: bytes, reason: str
) -> None:
    consulted: list[str] = []

    def spy(name: str) -> object:
        def refuse(*_: object) -> bool:
            consulted.append(name)
            return False

        return refuse

    # Every plugin outside the allow-list records any attempt to look at the file (its accept check runs first).
    for name, (factory, _accept) in list(Image.OPEN.items()):
        if name not in decode.FORMATS:
            monkeypatch.setitem(Image.OPEN, name, (factory, spy(name)))
    assert _decode(data).error == "unsupported_format", reason
    assert consulted == []


def test_postscript_named_jpg_is_never_rendered_even_with_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    # The file really is an EPS that Pillow would open (header parsing only; rendering happens on load).
    with Image.open(io.BytesIO(EPS)) as unrestricted:
        assert unrestricted.format == "EPS"
    rendered: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kw: rendered.append(args))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)  # as if `gs` were installed
    for data in (EPS, DOS_EPS, PDF):
        assert _decode(data).error == "unsupported_format"
    assert rendered == []
    assert EpsImagePlugin.gs_binary is False  # the module also disarmed Pillow's own Ghostscript lookup


def test_eps_with_a_real_ghostscript_installed_is_still_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("gs", "apt-get install ghostscript")
    from PIL import EpsImagePlugin

    # Re-arm Pillow's Ghostscript lookup, so that only the allow-list stands between the file and `gs`.
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    with Image.open(io.BytesIO(EPS)) as unrestricted:
        unrestricted.load()  # what an unrestricted Image.open does with it: Ghostscript runs the program
        assert unrestricted.getpixel((10, 10)) == (204, 102, 25)
    assert _decode(EPS).error == "unsupported_format"
    assert _decode(DOS_EPS).error == "unsupported_format"


def test_text_and_pdf_lookalikes_are_told_apart() -> None:
    assert _decode(b"%PDF-1.7 definitely a document").error == "unsupported_format"
    assert _decode(b"<html><body>not a photo</body></html>").error == "not_an_image"


def test_the_allow_list_is_what_the_api_accepts_plus_avif() -> None:
    assert decode.ALLOWED_FORMATS == ("JPEG", "PNG", "WEBP", "AVIF", "HEIF")
    # pillow-heif and Pillow's AVIF decoder are installed with the worker, so nothing allowed is missing here.
    assert decode.FORMATS == decode.ALLOWED_FORMATS


# --- thin and extreme shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(50_000, 2), (400_000, 2), (2, 50_000)], ids=["50000x2", "400000x2", "2x50000"])
def test_slivers_are_refused_before_decoding(shape: tuple[int, int]) -> None:
    data = _encode(Image.new("RGB", shape, "white"), "PNG")
    result = _decode(data)
    assert result.error == "extreme_aspect_ratio"
    assert result.decode_ms < 100  # refused from the header: nothing decoded or resized
    assert f"{shape[0]}x{shape[1]}" in result.detail


def test_a_panorama_is_cropped_to_its_centre_square() -> None:
    # 6:1, the shape of a phone panorama: red left, green centre, blue right.
    pixels = np.zeros((500, 3000, 3), np.uint8)
    pixels[:, :1250] = (255, 0, 0)
    pixels[:, 1250:1750] = (0, 255, 0)
    pixels[:, 1750:] = (0, 0, 255)
    result = _decode(_encode(Image.fromarray(pixels), "PNG"))
    assert result.pixels is not None
    assert result.pixels.shape == (SIZE, SIZE, 3)
    assert result.pixels[..., 1].min() > 200  # only the centre square is what the model sees


_PEAK_RSS = """
import io, resource, sys
from PIL import Image
from worker import decode
width, height = int(sys.argv[1]), int(sys.argv[2])
out = io.BytesIO()
Image.new("RGB", (width, height), "white").save(out, format="PNG")
data = out.getvalue()
decode.decode(b"\\x89PNG\\r\\n\\x1a\\n", 64, 10**9)  # import-time work out of the way
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = decode.decode(data, 64, 40_000_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.error, (after - before) // 1024)
"""


@pytest.mark.parametrize(
    ("shape", "error"),
    [((50_000, 2), "extreme_aspect_ratio"), ((400_000, 2), "extreme_aspect_ratio"), ((10_000, 400), "None")],
    ids=["50000x2", "400000x2", "10000x400-allowed"],
)
def test_decode_memory_does_not_grow_with_the_aspect(shape: tuple[int, int], error: str) -> None:
    # A fresh process, so its peak resident memory is this decode's: the 50000x2 PNG used to cost 1 GB.
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *map(str, shape)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code, grown_mib = done.stdout.split()
    assert code == error
    assert int(grown_mib) < 40  # 10000x400 decodes to 12 MB of RGB; nothing else may scale with the long side


# --- HEIC/HEIF and AVIF ------------------------------------------------------------------------------------------


def _halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def _oriented(fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_halves(200, 100), fmt, exif=exif.tobytes())


def _assert_rotated_clockwise(result: decode.Decoded) -> None:
    """Red on top, blue at the bottom: the sideways picture was turned upright as the phone displays it."""
    assert result.error is None
    assert result.pixels is not None
    top, bottom = result.pixels[2, SIZE // 2], result.pixels[-3, SIZE // 2]
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60


def test_iphone_heic_decodes() -> None:
    data = _encode(Image.fromarray(np.full((300, 400, 3), (200, 120, 40), np.uint8)), "HEIF", quality=90)
    assert data[4:12] == b"ftypheic"
    result = _decode(data)
    assert result.error is None
    assert result.source_size == (400, 300)
    assert result.pixels is not None
    assert np.abs(result.pixels.reshape(-1, 3).mean(axis=0) - (200, 120, 40)).max() < 8


def test_heic_exif_orientation_is_applied() -> None:
    _assert_rotated_clockwise(decode.decode(_oriented("HEIF", 6), SIZE, LIMIT))


def test_10_bit_heic_is_scaled_to_8_bit() -> None:
    import pillow_heif

    grey = np.full((60, 80, 3), 32768, np.uint16)  # mid-grey in 16-bit terms, stored as 10-bit
    out = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB;16", size=(80, 60), data=grey.tobytes()).save(out, quality=-1)
    data = out.getvalue()
    assert pillow_heif.open_heif(data, convert_hdr_to_8bit=False).info["bit_depth"] == 10
    result = _decode(data)
    assert result.pixels is not None
    assert 120 <= int(result.pixels.mean()) <= 135  # mid-grey, not clipped to white or to the low 8 bits


def test_heic_with_several_pictures_uses_the_primary_one() -> None:
    pictures = [Image.new("RGB", (80, 60), "blue"), Image.new("RGB", (80, 60), "red")]
    data = _encode(pictures[0], "HEIF", save_all=True, append_images=pictures[1:], primary_index=1)
    result = _decode(data)
    assert result.pixels is not None
    assert result.pixels[..., 0].mean() > 200


def test_avif_decodes_with_its_orientation() -> None:
    assert _oriented("AVIF", 6)[4:12] == b"ftypavif"
    _assert_rotated_clockwise(decode.decode(_oriented("AVIF", 6), SIZE, LIMIT))


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heif_and_avif_with_the_generic_mif1_brand_both_decode(fmt: str) -> None:
    data = _encode(Image.new("RGB", (64, 48), "orange"), fmt)
    generic = data[:8] + b"mif1" + data[12:]  # the major brand many encoders write instead of heic/avif
    result = _decode(generic)
    assert result.error is None
    assert result.pixels is not None
    assert result.pixels[..., 0].mean() > 200


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heif_and_avif_over_the_pixel_limit(fmt: str) -> None:
    assert _decode(_encode(Image.new("RGB", (400, 300), "red"), fmt), max_pixels=100_000).error == "too_many_pixels"
