"""Synthetic blood-smear fields for fast tests and the demo model. NOT real microscopy.

Each field shows pale red cells and a few white cells whose count, size, nucleus shape,
nucleus colour and cytoplasm texture differ by class. The differences are caricatures
chosen to be learnable in seconds, not a faithful model of any disease. Deterministic:
the same (seed, class, index) always draws the same picture.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import SYNTHETIC_MARKER

DEMO_CLASSES = ("healthy", "ALL", "AML", "CLL", "CML")


@dataclass(frozen=True)
class CellStyle:
    """How one class's white cells look (sizes are fractions of the field width)."""

    count: tuple[int, int]
    radius: float
    nucleus: str  # round | lobed | kidney | mixed
    nucleus_fraction: float
    nucleus_rgb: tuple[int, int, int]
    cytoplasm_rgb: tuple[int, int, int]
    granules: bool = False
    nucleoli: bool = False
    rod: bool = False


STYLES: dict[str, CellStyle] = {
    # neutrophil: one cell, segmented nucleus, pink granular cytoplasm
    "healthy": CellStyle((1, 1), 0.075, "lobed", 0.55, (100, 50, 135), (222, 190, 212), True),
    # lymphoblasts: several mid-size cells, round nucleus filling the cell
    "ALL": CellStyle((2, 3), 0.065, "round", 0.86, (120, 70, 165), (170, 175, 225)),
    # myeloblasts: large cells, paler nucleus with nucleoli, occasional Auer rod
    "AML": CellStyle(
        (2, 3), 0.095, "round", 0.74, (150, 100, 180), (160, 170, 205), False, True, True
    ),
    # small mature lymphocytes: many, very dark dense nucleus, thin rim
    "CLL": CellStyle((3, 5), 0.048, "round", 0.9, (55, 25, 85), (175, 180, 225)),
    # granulocytes at many stages: many cells, kidney and segmented nuclei, granules
    "CML": CellStyle((4, 6), 0.072, "mixed", 0.6, (105, 55, 140), (225, 195, 205), True),
}


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in values)
    return r, g, b


def style_for(label: str) -> CellStyle:
    """The class's style; any other label gets a stable style derived from its name."""
    if label in STYLES:
        return STYLES[label]
    h = np.random.default_rng(int(hashlib.sha256(label.encode()).hexdigest()[:8], 16))
    return CellStyle(
        count=(int(h.integers(1, 3)), int(h.integers(3, 6))),
        radius=float(h.uniform(0.045, 0.1)),
        nucleus=str(h.choice(["round", "lobed", "kidney"])),
        nucleus_fraction=float(h.uniform(0.5, 0.9)),
        nucleus_rgb=_rgb(h.integers(40, 170, 3)),
        cytoplasm_rgb=_rgb(h.integers(160, 235, 3)),
        granules=bool(h.integers(0, 2)),
        nucleoli=bool(h.integers(0, 2)),
    )


def _blend(canvas: np.ndarray, cx: float, cy: float, r: float, alpha_fn, rgb) -> None:
    """Paint colour ``rgb`` where alpha_fn(dx, dy) > 0 inside the box around (cx, cy)."""
    size = canvas.shape[0]
    x0, x1 = max(0, int(cx - r - 2)), min(size, int(cx + r + 3))
    y0, y1 = max(0, int(cy - r - 2)), min(size, int(cy + r + 3))
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    alpha = np.clip(alpha_fn(xx - cx, yy - cy), 0.0, 1.0)[..., None]
    patch = canvas[y0:y1, x0:x1]
    patch[...] = patch * (1 - alpha) + np.asarray(rgb, np.float32) * alpha


def _disc(r: float, ex: float = 1.0, angle: float = 0.0, edge: float = 1.2):
    c, s = np.cos(angle), np.sin(angle)

    def fn(dx, dy):
        u, v = (dx * c + dy * s) / ex, (-dx * s + dy * c) * ex
        return (r - np.hypot(u, v)) / edge

    return fn


def generate_field(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic smear field of class ``label`` as RGB uint8 (size, size, 3)."""
    style = style_for(label)
    bg = np.array([236, 222, 226], np.float32) + rng.normal(0, 4, 3)
    canvas = np.broadcast_to(bg, (size, size, 3)).copy()
    canvas += rng.normal(0, 3, (size, size, 1))
    # red cells: pale discs with a lighter centre
    n_rbc = int(rng.integers(25, 40))
    for _ in range(n_rbc):
        r = size * rng.uniform(0.038, 0.05)
        cx, cy = rng.uniform(0, size, 2)
        rgb = np.array([214, 135, 145]) + rng.normal(0, 6, 3)
        _blend(canvas, cx, cy, r, _disc(r, rng.uniform(0.9, 1.1), rng.uniform(0, np.pi)), rgb)
        _blend(canvas, cx, cy, r * 0.45, _disc(r * 0.45, edge=r * 0.3), rgb + 25)
    # white cells
    for _ in range(int(rng.integers(style.count[0], style.count[1] + 1))):
        r = size * style.radius * rng.uniform(0.88, 1.12)
        cx, cy = rng.uniform(r, size - r, 2)
        _blend(
            canvas,
            cx,
            cy,
            r,
            _disc(r, rng.uniform(0.92, 1.08), rng.uniform(0, np.pi)),
            np.asarray(style.cytoplasm_rgb) + rng.normal(0, 5, 3),
        )
        if style.granules:
            for _ in range(int(12 * (r / 10))):
                a, d = rng.uniform(0, 2 * np.pi), r * np.sqrt(rng.uniform(0.1, 0.85))
                gr = max(0.6, r * 0.06)
                _blend(
                    canvas,
                    cx + d * np.cos(a),
                    cy + d * np.sin(a),
                    gr,
                    _disc(gr, edge=0.6),
                    (185, 110, 160),
                )
        _draw_nucleus(canvas, cx, cy, r, style, rng)
        if style.rod and rng.uniform() < 0.6:
            a = rng.uniform(0, np.pi)
            for t in np.linspace(-0.5, 0.5, 9):
                px = cx + r * 0.8 * np.cos(a) + t * r * 0.5
                py = cy + r * 0.8 * np.sin(a) + t * r * 0.2
                _blend(
                    canvas,
                    px,
                    py,
                    max(0.7, r * 0.04),
                    _disc(max(0.7, r * 0.04), edge=0.5),
                    (170, 30, 60),
                )
    canvas *= 1 + rng.normal(0, 0.015, (size, size, 1))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _draw_nucleus(canvas, cx, cy, r, style: CellStyle, rng) -> None:
    rn = r * style.nucleus_fraction
    rgb = np.asarray(style.nucleus_rgb) + rng.normal(0, 6, 3)
    kind = style.nucleus
    if kind == "mixed":
        kind = str(rng.choice(["lobed", "kidney", "round"], p=[0.45, 0.4, 0.15]))
    if kind == "lobed":
        lobes = int(rng.integers(3, 5))
        base = rng.uniform(0, 2 * np.pi)
        for k in range(lobes):
            a = base + 2 * np.pi * k / lobes + rng.normal(0, 0.2)
            lr = rn * 0.45
            _blend(
                canvas,
                cx + rn * 0.55 * np.cos(a),
                cy + rn * 0.55 * np.sin(a),
                lr,
                _disc(lr, edge=0.8),
                rgb,
            )
    elif kind == "kidney":
        a = rng.uniform(0, 2 * np.pi)
        bx, by = rn * 0.9 * np.cos(a), rn * 0.9 * np.sin(a)
        outer, bite = _disc(rn, 1.15, a), _disc(rn * 0.6, edge=0.8)
        _blend(
            canvas,
            cx,
            cy,
            rn,
            lambda dx, dy: np.minimum(outer(dx, dy), -bite(dx - bx, dy - by)),
            rgb,
        )
    else:
        ox, oy = rng.normal(0, r * 0.05, 2)
        _blend(
            canvas, cx + ox, cy + oy, rn, _disc(rn, rng.uniform(0.93, 1.07), rng.uniform(0, 3)), rgb
        )
        if style.nucleoli:
            for _ in range(int(rng.integers(1, 4))):
                a, d = rng.uniform(0, 2 * np.pi), rn * rng.uniform(0, 0.55)
                nr = max(0.8, rn * 0.14)
                _blend(
                    canvas,
                    cx + d * np.cos(a),
                    cy + d * np.sin(a),
                    nr,
                    _disc(nr, edge=0.7),
                    rgb + 45,
                )


def generate(
    classes: tuple[str, ...] | list[str] = DEMO_CLASSES,
    per_class: int = 20,
    size: int = 96,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """In-memory synthetic set: (N, size, size, 3) uint8 fields and (N,) class indices."""
    xs, ys = [], []
    for ci, label in enumerate(classes):
        for i in range(per_class):
            xs.append(generate_field(label, size, np.random.default_rng([seed, ci, i])))
            ys.append(ci)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def write_dataset(
    out: Path,
    classes: tuple[str, ...] | list[str] = DEMO_CLASSES,
    per_class: int = 60,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a class-per-folder PNG set plus a SYNTHETIC.txt marker that training honours."""
    out = Path(out)
    for ci, label in enumerate(classes):
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = generate_field(label, size, np.random.default_rng([seed, ci, i]))
            Image.fromarray(img).save(folder / f"synthetic-{label}-{i:04d}.png")
    (out / SYNTHETIC_MARKER).write_text(
        "SYNTHETIC DATA generated by `python -m training synth` "
        f"(seed {seed}, {per_class} per class, {size} px).\n"
        "Cartoon smear fields for tests and demos. Not microscopy; never use for clinical "
        "claims.\n",
        encoding="utf-8",
    )
    return out
