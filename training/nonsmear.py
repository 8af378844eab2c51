"""Generated images that are NOT usable blood smears, to check the out-of-scope guard.

Eight kinds, each deterministic by seed: random noise, solid colours, rendered text (a
photographed form or screenshot), simple outdoor scenes (sky and grass gradients with a
sun, houses and trees), blank or near-white fields (an empty slide or a white page, with
lamp vignetting, sensor noise and dust), out-of-focus smears, and photographs of a
smear shown on a screen or printed on paper. The last three are made from real smears
when the caller passes some (``smears``; the checks pass the test split) and from
synthetic fields (``training.synth``) otherwise. A useful guard flags all of them and
passes real in-focus smears.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.preprocess import resize_for_model

KINDS = ("noise", "solid", "text", "scene", "blank", "blur", "screen", "paper")
#: Kinds made from a smear (real when given, synthetic otherwise).
FROM_SMEARS = ("blur", "screen", "paper")
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


def blank(rng: np.random.Generator, size: int) -> np.ndarray:
    """An empty field: near-white (a slide with no cells, a white page), sometimes tinted,
    darker towards the corners (the lamp), with sensor noise and a few dust specks."""
    tint = rng.uniform(205, 255) - rng.uniform(0, 20, 3) * (rng.random() < 0.5)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    vignette = 1.0 - rng.uniform(0, 0.25) * (xx**2 + yy**2) * 2
    arr = tint[None, None, :] * vignette[:, :, None] + rng.normal(
        0, rng.uniform(0.5, 4), (size, size, 3)
    )
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 6))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.5, size / 60 + 1)
        grey = int(rng.integers(60, 180))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(grey, grey, grey))
    return np.asarray(img, np.uint8)


def blur(rng: np.random.Generator, size: int, smear: np.ndarray) -> np.ndarray:
    """The smear out of focus: a Gaussian blur of 2.5-6 % of the field's width (a
    defocused objective spreads each point over several cell-membrane widths)."""
    from PIL import ImageFilter

    img = Image.fromarray(resize_for_model(smear, size))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(size * rng.uniform(0.025, 0.06))))


def _perspective(img: Image.Image, rng: np.random.Generator, strength: float, fill) -> Image.Image:
    """A camera held at an angle: each corner moved inwards by up to ``strength`` of the
    width, the rest filled with ``fill``."""
    w, h = img.size
    quad = [
        (rng.uniform(0, strength) * w, rng.uniform(0, strength) * h),
        (rng.uniform(0, strength) * w, h - rng.uniform(0, strength) * h),
        (w - rng.uniform(0, strength) * w, h - rng.uniform(0, strength) * h),
        (w - rng.uniform(0, strength) * w, rng.uniform(0, strength) * h),
    ]
    return img.transform(
        (w, h),
        Image.Transform.QUAD,
        [v for corner in quad for v in corner],
        Image.Resampling.BILINEAR,
        fillcolor=fill,
    )


def screen(rng: np.random.Generator, size: int, smear: np.ndarray) -> np.ndarray:
    """A phone photo of the smear on a monitor: the picture on a dark bezel, seen at an
    angle, with the screen's pixel grid (RGB stripes and dark scanlines), moire (the
    camera's sampling beating with that grid), a glare patch and lowered contrast."""
    inner = int(size * rng.uniform(0.7, 0.9))
    pic = resize_for_model(smear, inner).astype(np.float64)
    pitch = rng.uniform(2.0, 4.0)  # screen pixels per camera pixel
    xx, yy = np.meshgrid(np.arange(inner), np.arange(inner))
    stripes = np.stack([np.cos(2 * np.pi * (xx / pitch - c / 3)) for c in range(3)], -1)
    scan = 0.5 + 0.5 * np.cos(2 * np.pi * yy / pitch)
    angle = rng.uniform(-0.3, 0.3)
    f = rng.uniform(0.03, 0.09)  # moire: a slow beat along a slanted direction
    moire = np.cos(2 * np.pi * f * (xx * np.cos(angle) + yy * np.sin(angle)))
    pic = pic * (0.75 + 0.15 * stripes) * (0.7 + 0.3 * scan[..., None])
    pic = pic * (1 + rng.uniform(0.1, 0.25) * moire[..., None])
    gx, gy = rng.uniform(0, inner, 2)
    glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (inner * 0.25) ** 2))
    pic = pic * rng.uniform(0.6, 0.85) + 255 * rng.uniform(0.1, 0.35) * glare[..., None] + 20
    bezel = tuple(int(v) for v in rng.integers(5, 45, 3))
    canvas = Image.new("RGB", (size, size), bezel)
    at = (
        (size - inner) // 2 + int(rng.integers(-5, 6)),
        (size - inner) // 2 + int(rng.integers(-5, 6)),
    )
    canvas.paste(Image.fromarray(np.clip(pic, 0, 255).astype(np.uint8)), at)
    return np.asarray(_perspective(canvas, rng, 0.12, bezel), np.uint8)


def paper(rng: np.random.Generator, size: int, smear: np.ndarray) -> np.ndarray:
    """A photo of a printed page: the smear printed in halftone dots (or, for a third, a
    page of text) on off-white paper with fibre texture, uneven light and perspective."""
    bg = rng.uniform(225, 250) - np.array([0, rng.uniform(0, 6), rng.uniform(3, 15)])
    coarse = rng.normal(0, 1, (size // 4 + 1, size // 4 + 1))
    fibre = np.kron(coarse, np.ones((4, 4)))[:size, :size] * rng.uniform(3, 8)
    page = bg[None, None, :] + fibre[..., None] + rng.normal(0, 2, (size, size, 3))
    if rng.random() < 1 / 3:
        ink = text(rng, size).astype(np.float64)
        page = np.minimum(page, ink + (page - 240))
    else:
        inner = int(size * rng.uniform(0.5, 0.75))
        pic = resize_for_model(smear, inner).astype(np.float64) / 255
        cell = int(rng.integers(3, 6))  # halftone cell in pixels
        yy, xx = np.mgrid[0:inner, 0:inner]
        dot = np.hypot((xx % cell) - cell / 2, (yy % cell) - cell / 2) / (cell / np.sqrt(2))
        printed = np.where(dot[..., None] < np.sqrt(1 - pic), pic * 0.6, 1.0)
        x0, y0 = (int(v) for v in rng.integers(size // 10, size - inner - size // 20 + 1, 2))
        page[y0 : y0 + inner, x0 : x0 + inner] *= printed
    yy, xx = np.mgrid[0:size, 0:size] / size
    page *= (
        1 - rng.uniform(0.05, 0.3) * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy + 1) / 2
    )[..., None]
    desk = tuple(int(v) for v in rng.integers(40, 140, 3))
    img = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    return np.asarray(_perspective(img, rng, 0.15, desk), np.uint8)


_MAKERS: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise,
    "solid": solid,
    "text": text,
    "scene": scene,
    "blank": blank,
    "blur": blur,
    "screen": screen,
    "paper": paper,
}


def generate(
    kind: str,
    n: int,
    size: int,
    seed: int = 0,
    render_size: int = 224,
    smears: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` images of ``kind`` rendered at ``render_size`` and resized like an upload.

    ``smears`` (uint8, N x H x W x 3) are the pictures the smear-based kinds show, used in
    turn; without them those kinds use synthetic smear fields.
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        if kind in FROM_SMEARS:
            if smears is not None and len(smears):
                smear = np.asarray(smears[i % len(smears)])
            else:
                from training.synth import generate_field

                smear = generate_field("ALL", render_size, rng)
            out[i] = resize_for_model(_MAKERS[kind](rng, render_size, smear), size)
        else:
            out[i] = resize_for_model(_MAKERS[kind](rng, render_size), size)
    return out
