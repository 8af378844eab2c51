"""The report's figures as SVG drawn from numbers: one drawing for the registry pages,
report.html and the ``.svg`` files a run writes.

Pure functions returning SVG text (every label escaped) or plain rows for templates:
a report carries numbers, so figures never depend on files beside the database row.
The pages style the ``chart-*`` classes with their own CSS; :func:`save_svg` adds the
same rules to a file, so it reads alone.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

PALETTE = ("#6b2d5c", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#17becf")
# The registry pages' colours (static/css/leukweb.css), for an SVG read outside them.
FILE_STYLE = (
    ".chart-title{font:600 13px system-ui,sans-serif;fill:#1d2433}"
    ".chart-tick{font:11px system-ui,sans-serif;fill:#5b6578}"
    ".chart-frame{fill:none;stroke:#d9dee8}"
    ".chart-diagonal{stroke:#5b6578;stroke-dasharray:4 3}"
)
CHAR_WIDTH = 7  # px of an 11 px label character, to leave room for the longest label


def _polyline(points: Sequence[tuple[float, float]], colour: str, dash: str = "") -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dashed} points="{path}"/>'


def _frame(width: int, height: int, title: str, body: str) -> str:
    label = html.escape(title)
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{label}</title>{body}</svg>"
    )


def line_chart_svg(
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    width: int = 420,
    height: int = 240,
    mark_epoch: int | None = None,
) -> str:
    """Values per epoch, one line per series, a shared y axis from the data's range.

    ``mark_epoch`` (1-based) draws a dotted line at the epoch whose weights were kept.
    """
    series = {k: [float(v) for v in vs] for k, vs in series.items() if len(vs)}
    if not series:
        return ""
    left, right, top, bottom = 44, 10, 26, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    epochs = max(len(vs) for vs in series.values())

    def x(i: int) -> float:
        return left + (plot_w * i / (epochs - 1) if epochs > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    parts = [
        f'<text x="{left}" y="16" class="chart-title">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-frame"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="chart-tick">'
        f"{high:.3g}</text>",
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="chart-tick">'
        f"{low:.3g}</text>",
        f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" '
        f'class="chart-tick">epoch {epochs}</text>',
    ]
    for n, (name, vs) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        dash = "5 3" if name.startswith("val") else ""
        parts.append(_polyline([(x(i), y(v)) for i, v in enumerate(vs)], colour, dash))
        legend_y = top + plot_h + 28 + 12 * (n // 2)
        legend_x = left + (n % 2) * plot_w / 2
        parts.append(
            f'<line x1="{legend_x:.0f}" y1="{legend_y - 4}" x2="{legend_x + 18:.0f}" '
            f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f'/><text x="{legend_x + 22:.0f}" y="{legend_y}" class="chart-tick">'
            f"{html.escape(name)}</text>"
        )
    if mark_epoch is not None and 1 <= mark_epoch <= epochs:
        n = len(series)
        legend_y = top + plot_h + 28 + 12 * (n // 2)
        legend_x = left + (n % 2) * plot_w / 2
        parts.append(
            f'<line x1="{x(mark_epoch - 1):.1f}" y1="{top}" x2="{x(mark_epoch - 1):.1f}" '
            f'y2="{top + plot_h}" class="chart-diagonal"/>'
            f'<line x1="{legend_x:.0f}" y1="{legend_y - 4}" x2="{legend_x + 18:.0f}" '
            f'y2="{legend_y - 4}" class="chart-diagonal"/>'
            f'<text x="{legend_x + 22:.0f}" y="{legend_y}" class="chart-tick">'
            f"kept (epoch {mark_epoch})</text>"
        )
    return _frame(width, height, title, "".join(parts))


def curves_svg(
    history: Mapping[str, Sequence[float]],
    best_epoch: int | None = None,
    *,
    width: int = 420,
    height: int = 240,
) -> str:
    """Accuracy and loss per epoch, training (augmented) and validation, side by side."""
    panels = [
        line_chart_svg(
            {k: history.get(k, []) for k in (key, f"val_{key}")},
            title=key.capitalize(),
            width=width,
            height=height,
            mark_epoch=best_epoch,
        )
        for key in ("accuracy", "loss")
    ]
    panels = [svg for svg in panels if svg]
    if not panels:
        return ""
    body = "".join(
        f'<g transform="translate({i * width} 0)">{svg}</g>' for i, svg in enumerate(panels)
    )
    return _frame(width * len(panels), height, "Accuracy and loss per epoch", body)


def reliability_svg(curves: Mapping[str, Sequence[Mapping]], *, title: str, size: int = 260) -> str:
    """Accuracy against confidence per bin; the diagonal is perfect calibration.

    ``curves`` maps a name ("before", "after") to bins {"confidence", "accuracy", "count"}.
    Empty bins (no images) carry no point.
    """
    left, top, bottom, right = 40, 24, 44, 10
    plot = size - left - right
    height = top + plot + bottom

    def pt(conf: float, acc: float) -> tuple[float, float]:
        return left + plot * conf, top + plot * (1 - acc)

    parts = [
        f'<text x="{left}" y="16" class="chart-title">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" class="chart-frame"/>',
        f'<line x1="{left}" y1="{top + plot}" x2="{left + plot}" y2="{top}" '
        f'class="chart-diagonal"/>',
        f'<text x="{left + plot}" y="{top + plot + 14}" text-anchor="end" class="chart-tick">'
        f"confidence → 1</text>",
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="chart-tick">1</text>',
    ]
    drawn = 0
    for n, (name, bins) in enumerate(curves.items()):
        points = [
            pt(float(b["confidence"]), float(b["accuracy"]))
            for b in bins
            if b.get("count") and b.get("confidence") is not None and b.get("accuracy") is not None
        ]
        if not points:
            continue
        colour = PALETTE[n % len(PALETTE)]
        parts.append(_polyline(points, colour))
        parts.extend(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"/>' for cx, cy in points
        )
        legend_y = top + plot + 28 + 12 * drawn
        parts.append(
            f'<circle cx="{left + 6}" cy="{legend_y - 4}" r="4" fill="{colour}"/>'
            f'<text x="{left + 16}" y="{legend_y}" class="chart-tick">{html.escape(name)}</text>'
        )
        drawn += 1
    if not drawn:
        return ""
    return _frame(size, height + 12 * max(drawn - 1, 0), title, "".join(parts))


class HeatCell(TypedDict):
    count: int
    shade: float  # the cell's share of its row, 0-1
    diag: bool


class HeatRow(TypedDict):
    label: str
    total: int
    cells: list[HeatCell]


def heat_rows(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> list[HeatRow]:
    """Rows for a confusion-matrix table: each cell's count and its shade (row fraction).

    Shading by row (what share of one true/model class went where) keeps rare classes
    as visible as common ones.
    """
    rows: list[HeatRow] = []
    for i, (label, counts) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(counts)
        cells: list[HeatCell] = [
            {"count": c, "shade": round(c / total, 3) if total else 0.0, "diag": i == j}
            for j, c in enumerate(counts)
        ]
        rows.append({"label": label, "total": total, "cells": cells})
    return rows


def confusion_matrix_svg(
    matrix: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    title: str = "Confusion matrix (test split)",
) -> str:
    """Counts per true (row) and predicted (column) class, shaded as :func:`heat_rows`."""
    rows = heat_rows(matrix, labels)
    longest = CHAR_WIDTH * max((len(label) for label in labels), default=0)
    cell, left, top = max(40, longest + 10), longest + 16, 60
    size = cell * len(labels)
    parts = [
        f'<text x="4" y="16" class="chart-title">{html.escape(title)}</text>',
        f'<text x="{left}" y="34" class="chart-tick">predicted →</text>',
        f'<text x="4" y="{top - 6}" class="chart-tick">true ↓</text>',
    ]
    for j, label in enumerate(labels):
        parts.append(
            f'<text x="{left + cell * j + cell / 2:.0f}" y="{top - 6}" text-anchor="middle" '
            f'class="chart-tick">{html.escape(label)}</text>'
        )
    for i, row in enumerate(rows):
        y = top + cell * i
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" text-anchor="end" '
            f'class="chart-tick">{html.escape(row["label"])}</text>'
        )
        for j, c in enumerate(row["cells"]):
            x = left + cell * j
            ink = "#fff" if c["shade"] > 0.5 else "#1d2433"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{PALETTE[0]}" '
                f'fill-opacity="{c["shade"] * 0.85:.3f}"/>'
                f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle" '
                f'font-size="12" fill="{ink}">{c["count"]}</text>'
            )
    # The diagonal (right answers) is outlined last, so no neighbouring cell covers it.
    parts.extend(
        f'<rect x="{left + cell * i + 1}" y="{top + cell * i + 1}" width="{cell - 2}" '
        f'height="{cell - 2}" fill="none" stroke="#1e7b4f" stroke-width="2"/>'
        for i in range(len(rows))
    )
    parts.append(f'<rect x="{left}" y="{top}" width="{size}" height="{size}" class="chart-frame"/>')
    return _frame(left + size + 10, top + size + 10, title, "".join(parts))


def hbar_chart_svg(
    rows: Sequence[tuple[str, Sequence[float]]],
    *,
    series: Sequence[str],
    title: str,
    reference: tuple[str, float] | None = None,
    value_format: str = "{:.1%}",
    width: int = 560,
) -> str:
    """Horizontal bars of values in [0, 1], one group per row and one bar per series.

    ``reference`` (a label and a value) draws a dashed line across: the unshifted
    accuracy, or the best cheap baseline's.
    """
    if not rows:
        return ""
    bar, gap = 12, 8
    left = CHAR_WIDTH * max(len(label) for label, _ in rows) + 12
    right, top = 60, 40
    plot_w = width - left - right
    group = bar * len(series) + gap
    plot_h = group * len(rows)
    parts = [
        f'<text x="4" y="16" class="chart-title">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-frame"/>',
    ]
    for i, (label, values) in enumerate(rows):
        y0 = top + group * i + gap / 2
        parts.append(
            f'<text x="{left - 6}" y="{y0 + bar * len(series) / 2 + 4:.0f}" text-anchor="end" '
            f'class="chart-tick">{html.escape(label)}</text>'
        )
        for k, value in enumerate(values):
            length = plot_w * min(max(float(value), 0.0), 1.0)
            y = y0 + bar * k
            parts.append(
                f'<rect x="{left}" y="{y:.0f}" width="{length:.1f}" height="{bar - 2}" '
                f'fill="{PALETTE[k % len(PALETTE)]}"/>'
                f'<text x="{left + length + 3:.1f}" y="{y + bar - 3:.0f}" class="chart-tick">'
                f"{html.escape(value_format.format(value))}</text>"
            )
    bottom = top + plot_h
    parts.append(
        f'<text x="{left}" y="{bottom + 14}" class="chart-tick">0</text>'
        f'<text x="{left + plot_w}" y="{bottom + 14}" text-anchor="end" class="chart-tick">'
        "1</text>"
    )
    legend = [(name, PALETTE[k % len(PALETTE)]) for k, name in enumerate(series)]
    for k, (name, colour) in enumerate(legend):
        parts.append(
            f'<rect x="{left + 150 * k}" y="{bottom + 22}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + 150 * k + 14}" y="{bottom + 31}" '
            f'class="chart-tick">{html.escape(name)}</text>'
        )
    if reference is not None:
        name, value = reference
        x = left + plot_w * min(max(float(value), 0.0), 1.0)
        # The label hangs off the side of the line with more room, so it is never cut off.
        anchor = "end" if value > 0.5 else "start"
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
            f'class="chart-diagonal"/><text x="{x:.1f}" y="{top - 8}" text-anchor="{anchor}" '
            f'class="chart-tick">{html.escape(f"{name} {value_format.format(value)}")}</text>'
        )
    return _frame(width, bottom + 40, title, "".join(parts))


def robustness_svg(rob: Mapping | None) -> str:
    """Test accuracy under each colour and stain shift, the unshifted accuracy as a line."""
    if not rob:
        return ""
    return hbar_chart_svg(
        [(r["label"], [r["accuracy"]]) for r in rob.get("shifts", [])],
        series=["test accuracy"],
        title="Robustness to colour and stain shifts (test split)",
        reference=("unshifted", rob["clean"]["accuracy"]),
    )


def comparison_svg(rows: Sequence[Mapping], baselines: Mapping | None = None) -> str:
    """Test accuracy and macro F1 per architecture, the best cheap baseline as a line."""
    reference = None
    if baselines:
        name, best = max(((k, v["accuracy"]) for k, v in baselines.items()), key=lambda kv: kv[1])
        reference = (f"best baseline ({name})", best)
    return hbar_chart_svg(
        [(r["arch"], [r["accuracy"], r["macro_f1"]]) for r in rows],
        series=["accuracy", "macro F1"],
        title="Architectures compared on the same split",
        reference=reference,
        value_format="{:.3f}",
    )


def tradeoff_svg(
    points: Sequence[tuple[str, float, float]],
    *,
    title: str = "Clean accuracy against the worst shift (test split)",
    tolerance: float = 0.05,
    size: int = 340,
) -> str:
    """One dot per model: unshifted accuracy (x) against its worst shifted accuracy (y).

    The dashed line is worst = clean - ``tolerance``: a model on or above it loses at
    most that much under every shift. Axes run from the lowest value shown to 1.
    """
    if not points:
        return ""
    left, top, bottom, right = 44, 24, 44 + 13 * len(points), 12
    plot = size - left - right
    low = min(0.9, *(min(c, w) for _, c, w in points))
    low = max(0.0, float(int(low * 10)) / 10)  # down to a tenth

    def pt(clean: float, worst: float) -> tuple[float, float]:
        return (
            left + plot * (clean - low) / (1 - low),
            top + plot * (1 - (worst - low) / (1 - low)),
        )

    x0, y0 = pt(low + tolerance, low)
    x1, y1 = pt(1.0, 1.0 - tolerance)
    parts = [
        f'<text x="{left}" y="16" class="chart-title">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" class="chart-frame"/>',
        f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" class="chart-diagonal"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="chart-tick">1</text>',
        f'<text x="{left - 4}" y="{top + plot}" text-anchor="end" class="chart-tick">'
        f"{low:.1f}</text>",
        f'<text x="{left + plot}" y="{top + plot + 14}" text-anchor="end" class="chart-tick">'
        f"clean accuracy → 1</text>",
        f'<text x="{left}" y="{top + plot + 14}" class="chart-tick">worst shift ↑</text>',
    ]
    for n, (name, clean, worst) in enumerate(points):
        colour = PALETTE[n % len(PALETTE)]
        cx, cy = pt(clean, worst)
        legend_y = top + plot + 30 + 13 * n
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}"/>'
            f'<circle cx="{left + 6}" cy="{legend_y - 4}" r="4" fill="{colour}"/>'
            f'<text x="{left + 16}" y="{legend_y}" class="chart-tick">'
            f"{html.escape(name)} ({clean:.1%}, {worst:.1%})</text>"
        )
    return _frame(size, top + plot + bottom, title, "".join(parts))


def save_svg(svg: str, path: Path) -> Path:
    """Write a figure as a standalone ``.svg`` file, with the styles the pages would give it."""
    # The first ">" closes the <svg ...> tag: labels are escaped, so none comes earlier.
    document = svg.replace(">", f"><style>{FILE_STYLE}</style>", 1)
    Path(path).write_text(document + "\n", encoding="utf-8")
    return Path(path)
