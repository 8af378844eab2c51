"""The report's pictures (matplotlib, Agg backend, small PNGs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

DPI = 90


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def confusion_matrix_png(cm: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> Path:
    """Counts with row-normalised shading: each row is one true class."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.2, 1.0 * n + 1.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{cm[i, j]}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=9,
            )
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title("Confusion matrix (test split)")
    return _save(fig, path)


def curves_png(
    history: Mapping[str, Sequence[float]], path: Path, best_epoch: int | None = None
) -> Path:
    """Accuracy and loss per epoch for training (augmented) and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        train, val = history.get(key, []), history.get(f"val_{key}", [])
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, train, label="training (augmented)")
        if len(val):
            ax.plot(np.arange(1, len(val) + 1), val, label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def reliability_png(before: Mapping, after: Mapping, path: Path) -> Path:
    """Reliability diagram: accuracy per confidence bin, before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    total = max(1, sum(b["count"] for b in before["bins"]))
    for rel, label, marker in ((before, "before", "o"), (after, "after T", "s")):
        pts = [(b["confidence"], b["accuracy"], b["count"]) for b in rel["bins"] if b["count"]]
        if pts:
            xs, ys, ns = zip(*pts, strict=True)
            line = ax.plot(xs, ys, lw=1, alpha=0.6)[0]
            # marker area follows the share of images in the bin: sparse bins are noise
            ax.scatter(
                xs,
                ys,
                s=[12 + 400 * n / total for n in ns],
                marker=marker,
                color=line.get_color(),
                alpha=0.8,
                label=f"{label} (ECE {rel['ece']:.3f})",
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (test split; marker area = images)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def comparison_png(rows: Sequence[Mapping], path: Path, baselines: Mapping | None = None) -> Path:
    """Test accuracy and macro F1 per architecture, with the best cheap baseline as a line."""
    names = [r["arch"] for r in rows]
    acc = [r["accuracy"] for r in rows]
    f1 = [r["macro_f1"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows) + 2), 3.8))
    b1 = ax.bar(x - 0.2, acc, 0.4, label="accuracy")
    b2 = ax.bar(x + 0.2, f1, 0.4, label="macro F1")
    for bars in (b1, b2):
        for bar in bars:
            ax.annotate(
                f"{bar.get_height():.3f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    if baselines:
        name, best = max(((k, v["accuracy"]) for k, v in baselines.items()), key=lambda kv: kv[1])
        ax.axhline(best, color="grey", ls="--", lw=1, label=f"best baseline ({name})")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test split")
    ax.set_title("Architectures compared on the same split")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def robustness_png(rob: Mapping | None, path: Path) -> Path:
    """Test accuracy under each colour/stain shift, the clean accuracy as a line."""
    rows = list((rob or {}).get("shifts", []))
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.6))
    y = np.arange(len(rows))
    acc = [r["accuracy"] for r in rows]
    ax.barh(y, acc, color="#4c72b0")
    for yi, a in zip(y, acc, strict=True):
        ax.annotate(
            f"{a:.1%}", (a, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8
        )
    if rob:
        ax.axvline(
            rob["clean"]["accuracy"],
            color="k",
            ls="--",
            lw=1,
            label=f"unshifted {rob['clean']['accuracy']:.1%}",
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("test accuracy")
    ax.set_title("Robustness to colour and stain shifts (test split)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
