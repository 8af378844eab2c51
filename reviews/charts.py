"""Inline SVG figures and heatmap tables drawn from numbers, for pages and print.

Pure functions returning SVG text (every label escaped) or plain rows for templates:
a report carries numbers, so figures never depend on files beside the database row.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

PALETTE = ("#6b2d5c", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#17becf")


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
    series: Mapping[str, Sequence[float]], *, title: str, width: int = 420, height: int = 240
) -> str:
    """Values per epoch, one line per series, a shared y axis from the data's range."""
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
    return _frame(width, height, title, "".join(parts))


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


def heat_rows(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> list[dict[str, object]]:
    """Rows for a confusion-matrix table: each cell's count and its shade (row fraction).

    Shading by row (what share of one true/model class went where) keeps rare classes
    as visible as common ones.
    """
    rows = []
    for i, (label, counts) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(counts)
        cells = [
            {"count": c, "shade": round(c / total, 3) if total else 0.0, "diag": i == j}
            for j, c in enumerate(counts)
        ]
        rows.append({"label": label, "total": total, "cells": cells})
    return rows
