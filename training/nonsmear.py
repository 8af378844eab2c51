"""Generated images that are NOT blood smears, to check the out-of-scope guard.

Four kinds, each deterministic by seed: random noise, solid colours, rendered text (a
photographed form or screenshot), and simple outdoor scenes (sky and grass gradients with
a sun, houses and trees). A useful guard flags most of them and passes most real smears.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.preprocess import resize_for_model

KINDS = ("noise", "solid", "text", "scene")
_WORDS = (
    "patient",
    "report",
    "blood",
    "count",
    "invoice",
    "total",
    "date",
    "name",
    "sample",
    "laboratory",
    "result",
    "hello",
    "world",
    "page",
    "table",
    "summary",
    "signed",
)


def noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform RGB noise, or Gaussian noise around a random grey (half each)."""
    if rng.random() < 0.5:
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    grey = rng.uniform(40, 215)
    return np.clip(rng.normal(grey, rng.uniform(10, 60), (size, size, 3)), 0, 255).astype(np.uint8)


def solid(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (size, size, 3)).copy()


def text(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lines of dark words on a light page, PIL's default font at a random size."""
    bg = tuple(int(v) for v in rng.integers(215, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=int(rng.integers(max(8, size // 20), max(9, size // 8))))
    assert isinstance(font, ImageFont.FreeTypeFont)  # always, when a size is given
    y = int(rng.integers(2, max(3, size // 10)))
    while y < size:
        line = " ".join(rng.choice(_WORDS, int(rng.integers(2, 6))))
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        draw.text((int(rng.integers(2, max(3, size // 8))), y), line, fill=ink, font=font)
        y += int(font.size * rng.uniform(1.3, 2.0))
    return np.asarray(img, np.uint8)


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """Blue sky gradient over a green field, a sun, a few houses and round trees."""
    h = size
    horizon = int(h * rng.uniform(0.45, 0.7))
    t = np.linspace(0, 1, h)[:, None, None]
    sky_top, sky_low = np.array([40, 100, 200]), np.array([170, 210, 245])
    grass_top, grass_low = np.array([90, 170, 60]), np.array([30, 100, 25])
    sky = sky_top + (sky_low - sky_top) * t
    grass = grass_top + (grass_low - grass_top) * t
    rows = np.where(np.arange(h)[:, None, None] < horizon, sky, grass)
    arr = np.broadcast_to(rows, (h, size, 3)) + rng.normal(0, 4, (h, size, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = size * rng.uniform(0.05, 0.1)
    cx, cy = size * rng.uniform(0.1, 0.9), horizon * rng.uniform(0.15, 0.5)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 225, 80))
    for _ in range(int(rng.integers(1, 4))):
        w = size * rng.uniform(0.12, 0.25)
        x0 = size * rng.uniform(0, 0.8)
        y1 = horizon + size * rng.uniform(0.02, 0.15)
        y0 = y1 - w * rng.uniform(0.6, 1.0)
        wall = tuple(int(v) for v in rng.integers(120, 240, 3))
        draw.rectangle([x0, y0, x0 + w, y1], fill=wall)
        draw.polygon(
            [(x0 - w * 0.1, y0), (x0 + w * 1.1, y0), (x0 + w / 2, y0 - w * 0.5)], fill=(150, 40, 30)
        )
    for _ in range(int(rng.integers(1, 5))):
        tx = size * rng.uniform(0, 1)
        ty = horizon + size * rng.uniform(0, 0.2)
        tr = size * rng.uniform(0.04, 0.09)
        draw.rectangle([tx - tr * 0.2, ty - tr, tx + tr * 0.2, ty + tr], fill=(90, 60, 30))
        draw.ellipse([tx - tr, ty - 2.6 * tr, tx + tr, ty - 0.6 * tr], fill=(20, 110, 35))
    return np.asarray(img, np.uint8)


_MAKERS = {"noise": noise, "solid": solid, "text": text, "scene": scene}


def generate(kind: str, n: int, size: int, seed: int = 0, render_size: int = 224) -> np.ndarray:
    """``n`` images of ``kind`` rendered at ``render_size`` and resized like an upload."""
    if kind not in _MAKERS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = resize_for_model(_MAKERS[kind](rng, render_size), size)
    return out
