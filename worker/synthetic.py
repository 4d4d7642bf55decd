"""Generated photos for the demo model, the benchmark, the demo and the tests (no real data set is available here).

"food" is a plate seen from above with round, warm-coloured items on a table; "other" is a street or room scene of
straight edges, sky and cool colours. The task is easy by design: it proves the training and serving paths work end to
end, not that a model recognises real food. Real accuracy needs the user's own labelled photos.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS = ("food", "other")
_FOOD_COLOURS = [(200, 40, 30), (230, 120, 20), (240, 200, 40), (90, 160, 40), (120, 70, 30), (250, 230, 200)]
_OTHER_COLOURS = [(60, 70, 90), (110, 120, 140), (40, 90, 160), (150, 150, 150), (30, 40, 50), (80, 110, 100)]


def _jitter(rng: random.Random, colour: tuple[int, int, int], amount: int = 30) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)
    return (r, g, b)


def _draw_food(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int) -> None:
    draw.rectangle((0, 0, w, h), fill=_jitter(rng, (150, 105, 70), 50))  # table
    for _ in range(rng.randint(3, 8)):  # wood grain
        y = rng.uniform(0, h)
        draw.line(
            (0, y, w, y + rng.uniform(-h / 10, h / 10)), fill=_jitter(rng, (110, 75, 45), 20), width=max(1, h // 80)
        )
    side = min(w, h)
    radius = side * rng.uniform(0.3, 0.46)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_jitter(rng, (235, 235, 230), 15))
    inner = radius * 0.8
    draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), outline=(200, 200, 195), width=max(1, side // 100))
    for _ in range(rng.randint(4, 12)):
        r = inner * rng.uniform(0.12, 0.35)
        x, y = cx + rng.uniform(-0.55, 0.55) * inner, cy + rng.uniform(-0.55, 0.55) * inner
        draw.ellipse((x - r, y - r * rng.uniform(0.6, 1.0), x + r, y + r), fill=_jitter(rng, rng.choice(_FOOD_COLOURS)))


def _draw_other(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int) -> None:
    horizon = h * rng.uniform(0.3, 0.7)
    sky = _jitter(rng, (150, 180, 220), 40)
    draw.rectangle((0, 0, w, horizon), fill=sky)
    draw.rectangle((0, horizon, w, h), fill=_jitter(rng, (90, 95, 100), 40))
    for _ in range(rng.randint(3, 10)):  # buildings, furniture, signs
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(0.05, 0.35) * w, y0 + rng.uniform(0.05, 0.5) * h
        draw.rectangle((x0, y0, x1, y1), fill=_jitter(rng, rng.choice(_OTHER_COLOURS)))
        for i in range(rng.randint(0, 6)):  # windows
            wy = y0 + (i + 0.5) * (y1 - y0) / 7
            draw.line((x0, wy, x1, wy), fill=_jitter(rng, (200, 210, 220)), width=max(1, h // 150))
    for _ in range(rng.randint(1, 5)):
        draw.line(
            (rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, h)),
            fill=_jitter(rng, (20, 20, 20)),
            width=max(1, h // 120),
        )


def render(label: str, width: int, height: int, seed: int) -> Image.Image:
    """One generated RGB photo of class `label` at `width` x `height`, with sensor-like noise."""
    rng = random.Random(seed)
    # Shapes are drawn at a modest size and scaled up, as a phone's optics would soften them; noise adds the fine
    # detail that makes JPEG decoding cost what it does on real photos.
    base_w, base_h = min(width, 640), max(1, round(min(width, 640) * height / width))
    image = Image.new("RGB", (base_w, base_h))
    draw = ImageDraw.Draw(image)
    (_draw_food if label == "food" else _draw_other)(draw, rng, base_w, base_h)
    image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.2)))
    if (base_w, base_h) != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    noise_rng = np.random.default_rng(seed)
    tile = noise_rng.normal(0, rng.uniform(3, 8), size=(min(height, 256), min(width, 256), 3)).astype(np.int16)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    noise = np.tile(tile, reps)[:height, :width]
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def jpeg_bytes(image: Image.Image, quality: int = 90, exif_orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if exif_orientation is not None:
        exif[0x0112] = exif_orientation
    image.save(out, format="JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def photo(label: str, width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """A generated phone-style JPEG."""
    return jpeg_bytes(render(label, width, height, seed), quality)


def decoded_sample(args: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """Training sample `index` of a generated set: a photo of varied size and quality, decoded as in production."""
    from worker import decode

    index, size, seed = args
    rng = random.Random(seed * 1_000_003 + index)
    label = index % 2
    width = rng.randint(size * 2, size * 4)
    height = int(width * rng.choice((0.75, 1.0, 1.33)))
    data = photo(LABELS[label], width, height, seed * 1_000_003 + index, rng.randint(70, 95))
    pixels = decode.decode(data, size, 10**9).pixels
    assert pixels is not None
    return pixels, label
