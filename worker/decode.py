"""Photo decoding for the model: bytes in, a fixed-size RGB uint8 array or a short machine-readable error out.

Runs in the decode process pool, so it imports neither torch nor boto3. Decoding, not the model, bounds the
worker's throughput, so JPEGs are decoded with DCT-domain downscaling (`Image.draft`): a 4032x3024 photo is decoded
straight to about 504x378, several times faster than a full decode followed by a resize.

Only the formats in `ALLOWED_FORMATS` are ever parsed: `Image.open(formats=...)` never consults another Pillow
plugin, so a PostScript, EPS or PDF file (whatever it is named) is refused from its first bytes and never reaches
Ghostscript, and nothing else an attacker uploads selects a rarely used decoder. Memory is bounded by the output,
not by the input's shape: slivers beyond `MAX_ASPECT_RATIO` are refused before decoding, and everything else is
cropped to its centre square before it is resized, so no intermediate is larger than the decoded photo itself.
"""

from __future__ import annotations

import io
import signal
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pillow_heif
from PIL import EpsImagePlugin, Image, ImageOps, UnidentifiedImageError

# HEIC/HEIF, the iPhone camera's default. The plugin returns HDR (10/12-bit) photos as 8-bit RGB and applies the
# HEIF transforms (rotation, mirror) on decode. Thumbnails, depth maps and auxiliary pictures are never used, so
# they are not read; one decode thread, since the pool already runs one process per core.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False, decode_threads=1)

# Error codes written to results; stable strings that the app and dashboards key on.
EMPTY_OBJECT = "empty_object"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED_IMAGE = "truncated_image"
CORRUPT_IMAGE = "corrupt_image"
TOO_MANY_PIXELS = "too_many_pixels"
MULTI_FRAME_IMAGE = "multi_frame_image"
UNSUPPORTED_FORMAT = "unsupported_format"
HEIC_UNSUPPORTED = "heic_unsupported"
EXTREME_ASPECT_RATIO = "extreme_aspect_ratio"

# What the upload API accepts (JPEG, PNG, WebP, HEIC) plus AVIF, the other camera format of the same family
# (Android phones, Pillow's own decoder). Phone JPEGs that are MPO come through the JPEG plugin. AVIF is tried before
# HEIF: both containers may carry the generic "mif1" brand, and Pillow's AVIF plugin declines HEVC content, whereas
# pillow-heif would take AV1 content it cannot decode.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "HEIF")
# A 240-degree phone panorama is about 6:1; beyond this a picture is a sliver that no crop can classify.
MAX_ASPECT_RATIO = 25

# Never hand anything to Ghostscript, even if the EPS plugin were reached and `gs` were on the PATH.
EpsImagePlugin.gs_binary = False
Image.init()
# The allowed formats this Pillow can open (HEIF needs pillow-heif, AVIF a Pillow built with libavif).
FORMATS: tuple[str, ...] = tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)

# ISO-BMFF brands of HEIF/AVIF files (iPhone photos), recognised so the error says why, not just "not an image".
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
# Formats recognised from their first bytes and refused without being parsed: GIF, TIFF, BMP, PostScript, PDF,
# DOS EPS, Photoshop, JPEG 2000 (box and codestream), ICO, QOI, SVG.
_REFUSED_MAGIC = (
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"%!",
    b"%PDF",
    b"\xc5\xd0\xd3\xc6",
    b"8BPS",
    b"\x00\x00\x00\x0cjP  ",
    b"\xff\x4f\xff\x51",
    b"\x00\x00\x01\x00",
    b"qoif",
    b"<svg",
    b"<?xml",
)
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Decoded:
    """Outcome of decoding one photo: `pixels` (size x size x 3 uint8) or `error`, plus what it cost."""

    pixels: np.ndarray | None
    error: str | None
    decode_ms: float
    source_size: tuple[int, int] | None = None
    detail: str = field(default="", compare=False)


def init_pool_process(max_pixels: int) -> None:
    """Initializer for decode processes: the parent owns shutdown, and the pixel limit is a process global."""
    # A SIGTERM to the process group must not kill decoders mid-batch; the parent shuts the pool down itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Image.MAX_IMAGE_PIXELS = max_pixels


def has_image_signature(data: bytes) -> bool:
    """JPEG, PNG or WebP magic bytes at the start: the allowed formats that are not ISO-BMFF."""
    webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(_IMAGE_MAGIC) or webp


def is_heif(data: bytes) -> bool:
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS + _AVIF_BRANDS


def _unidentified(data: bytes) -> _DecodeError:
    """Why a file none of the allowed decoders accepted was refused, judged from its first bytes only."""
    if is_heif(data):
        decodable = "AVIF" in FORMATS if data[8:12] in _AVIF_BRANDS else "HEIF" in FORMATS
        return _DecodeError(CORRUPT_IMAGE if decodable else HEIC_UNSUPPORTED)
    # A file that starts like an allowed image but cannot be opened is a broken image, not some other file.
    if has_image_signature(data):
        return _DecodeError(CORRUPT_IMAGE)
    # Leading whitespace is allowed before the text formats (PostScript, SVG); only the first bytes are looked at.
    if data[:64].lstrip().startswith(_REFUSED_MAGIC) or data.startswith(_REFUSED_MAGIC):
        return _DecodeError(UNSUPPORTED_FORMAT, f"accepted formats: {', '.join(FORMATS)}")
    return _DecodeError(NOT_AN_IMAGE)


def decode(data: bytes, size: int, max_pixels: int, *, draft: bool = True) -> Decoded:
    """Decode `data` to a `size` x `size` RGB array (shorter side scaled to `size`, centre crop); never raises."""
    start = time.perf_counter()
    try:
        pixels, source_size = _decode(data, size, max_pixels, draft)
        return Decoded(pixels, None, (time.perf_counter() - start) * 1000, source_size)
    except _DecodeError as exc:
        return Decoded(None, exc.code, (time.perf_counter() - start) * 1000, None, exc.detail)
    except Exception as exc:  # a decoder bug must cost one photo, never the worker
        return Decoded(None, CORRUPT_IMAGE, (time.perf_counter() - start) * 1000, None, f"{type(exc).__name__}: {exc}")


class _DecodeError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


def _decode(data: bytes, size: int, max_pixels: int, draft: bool) -> tuple[np.ndarray, tuple[int, int]]:
    if not data:
        raise _DecodeError(EMPTY_OBJECT)
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; any bomb is an error here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise _DecodeError(TOO_MANY_PIXELS, str(exc)) from None
        except UnidentifiedImageError:
            raise _unidentified(data) from None
        except (OSError, SyntaxError, ValueError) as exc:
            code = TRUNCATED_IMAGE if "truncated" in str(exc).lower() else CORRUPT_IMAGE
            raise _DecodeError(code, str(exc)) from None
        with image:
            source_size = image.size
            if image.width * image.height > max_pixels:
                raise _DecodeError(TOO_MANY_PIXELS, f"{image.width}x{image.height}")
            if max(image.size) > MAX_ASPECT_RATIO * max(1, min(image.size)):
                raise _DecodeError(EXTREME_ASPECT_RATIO, f"{image.width}x{image.height}, over {MAX_ASPECT_RATIO}:1")
            # Phone JPEGs are often MPO (the photo plus a depth map or preview) and HEIC files can hold several
            # pictures: classify the primary one. Any other multi-frame file (animated WebP/PNG/AVIF) is rejected
            # rather than guessed at.
            frames = int(getattr(image, "n_frames", 1))
            if frames > 1 and image.format not in ("MPO", "HEIF"):
                raise _DecodeError(MULTI_FRAME_IMAGE, f"{image.format} with {frames} frames")
            if draft and image.format in ("JPEG", "MPO"):
                # Scale by 1/2, 1/4 or 1/8 in the DCT domain while keeping both sides >= size.
                image.draft("RGB", (size, size))
            try:
                image.load()
                image = _centre_square(_upright(image))
                rgb = _to_rgb(image)
            except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
                raise _DecodeError(TOO_MANY_PIXELS, str(exc)) from None
            except OSError as exc:
                message = str(exc)
                truncated = "truncated" in message or "broken data stream" in message or "premature end" in message
                raise _DecodeError(TRUNCATED_IMAGE if truncated else CORRUPT_IMAGE, message) from None
            except (SyntaxError, ValueError, EOFError) as exc:
                raise _DecodeError(CORRUPT_IMAGE, str(exc)) from None
    return _resize_crop(rgb, size), source_size


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store portrait photos sideways); a broken EXIF block is ignored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha over white, 16-bit and float scaled rather than clipped, CMYK converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        gray = np.clip(array * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode in ("L", "P", "1", "CMYK", "YCbCr", "LAB", "HSV") or mode.startswith("BGR"):
        return image.convert("RGB")
    raise _DecodeError(UNSUPPORTED_FORMAT, f"image mode {mode}")


def _centre_square(image: Image.Image) -> Image.Image:
    """The centred square the model sees, cut before any conversion or resize so neither scales with the aspect."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return image
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side scaled to `size`, centre crop; `image` is usually square already (see `_centre_square`)."""
    square = _centre_square(image)
    # reducing_gap lets Pillow shrink by an integer factor first (fast box filter), then resample the rest.
    resized = square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)
