"""Turn a training report.json (``ModelVersion.report``) into what the report page shows.

Reports come from different training runs and versions of the training code, so every
section is optional: a missing or malformed one is left out, never an error page.
The structure is written by ``training/train.py`` (``evaluation.test``,
``evaluation.reliability_before/after``, ``training.history``, ``baselines``,
``robustness``, ``per_source`` and ``ood``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from training.charts import heat_rows, line_chart_svg, reliability_svg
from training.report import caveats, colour_blind, colour_blind_line

PER_CLASS_METRICS = ("precision", "recall", "specificity", "f1", "roc_auc", "support")
HEADLINE = (
    ("accuracy", "Accuracy", True),
    ("macro_f1", "Macro F1", False),
    ("weighted_f1", "Weighted F1", False),
    ("macro_roc_auc", "Macro ROC AUC (one-vs-rest)", False),
    ("ece_before", "ECE before calibration", False),
    ("ece_after", "ECE after calibration", False),
    ("temperature", "Temperature", False),
    ("confidence_threshold", "Needs-review threshold", False),
    ("n", "Test images", False),
)
COMPARISON_COLUMNS = ("accuracy", "macro_f1", "macro_roc_auc", "ece_after")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: float | None) -> int | None:
    """A number of images: printed without decimals."""
    return None if value is None else int(value)


def _matrix(value: Any, size: int) -> list[list[int]] | None:
    if not isinstance(value, list) or len(value) != size:
        return None
    if not all(isinstance(row, list) and len(row) == size for row in value):
        return None
    if not all(isinstance(c, int) for row in value for c in row):
        return None
    return value


def _series(history: Mapping, keys: Iterable[str]) -> dict[str, list[float]]:
    out = {}
    for key in keys:
        values = history.get(key)
        if isinstance(values, list) and values and all(_number(v) is not None for v in values):
            out[key] = values
    return out


def comparison_row(report: Mapping, label: str) -> dict | None:
    """One architecture's test metrics, for the comparison across registered versions."""
    test = _dict(_dict(report.get("evaluation")).get("test"))
    if _number(test.get("accuracy")) is None:
        return None
    return {
        "label": label,
        "arch": report.get("architecture", ""),
        **{key: _number(test.get(key)) for key in COMPARISON_COLUMNS},
    }


def _validity(report: Mapping) -> dict[str, Any]:
    """Robustness rows, per-source rows and the out-of-scope guard's facts, where present."""
    rob = _dict(report.get("robustness"))
    robustness = [
        (
            row.get("label", ""),
            _number(row.get("accuracy")),
            _number(row.get("macro_f1")),
            _number(row.get("out_of_scope")),
        )
        for row in rob.get("shifts") or []
        if isinstance(row, dict) and _number(row.get("accuracy")) is not None
    ]
    per_source = [
        (name, _number(v.get("n")), _number(v.get("accuracy")), _number(v.get("macro_f1")))
        for name, v in _dict(report.get("per_source")).items()
        if isinstance(v, dict)
    ]
    ood = _dict(report.get("ood"))
    reasons = _dict(ood.get("reasons"))
    flagged = [
        (
            name,
            _number(v),
            ", ".join(f"{k} {n}" for k, n in _dict(reasons.get(name)).items()),
        )
        for name, v in _dict(ood.get("flagged")).items()
        if _number(v) is not None
    ]
    return {
        "robustness": robustness,
        "robustness_clean": _number(_dict(rob.get("clean")).get("accuracy")),
        "per_source": per_source,
        "ood": {
            "layer": ood.get("layer", ""),
            "multi": ood.get("method") == "multi-check",
            "checks": ", ".join(str(c) for c in ood.get("checks") or []),
            "threshold": _number(ood.get("threshold")),
            "quantile": _number(ood.get("quantile")),
            "flagged": flagged,
        }
        if ood
        else None,
    }


def report_sections(report: Mapping) -> dict[str, Any]:
    """Every section the report has, ready for the template; absent ones are None/empty."""
    report = _dict(report)
    evaluation = _dict(report.get("evaluation"))
    test = _dict(evaluation.get("test"))
    classes = [c for c in report.get("classes") or [] if isinstance(c, str)]
    history = _dict(_dict(report.get("training")).get("history"))

    headline = [
        (title, _count(value) if key == "n" else value, pct)
        for key, title, pct in HEADLINE
        if (value := _number(test.get(key))) is not None
    ]
    per_class = []
    for label in classes:
        metrics = _dict(_dict(test.get("per_class")).get(label))
        if metrics:
            values = [_number(metrics.get(k)) for k in PER_CLASS_METRICS]
            per_class.append(
                (
                    label,
                    [
                        _count(v) if k == "support" else v
                        for k, v in zip(PER_CLASS_METRICS, values, strict=True)
                    ],
                )
            )
    matrix = _matrix(test.get("confusion_matrix"), len(classes)) if classes else None

    curves = [
        line_chart_svg(_series(history, (key, f"val_{key}")), title=key.capitalize())
        for key in ("accuracy", "loss")
    ]
    reported_bins = {
        name: _dict(evaluation.get(f"reliability_{name}")).get("bins")
        for name in ("before", "after")
    }
    bins = {
        f"{name} calibration": [b for b in value if isinstance(b, dict)]
        for name, value in reported_bins.items()
        if isinstance(value, list)
    }
    baselines = [
        (name, _number(b.get("accuracy")), _number(b.get("macro_f1")), b.get("description", ""))
        for name, b in _dict(report.get("baselines")).items()
        if isinstance(b, dict)
    ]
    comparison = [
        row
        for row in _dict(report.get("comparison")).get("rows") or []
        if isinstance(row, dict) and _number(row.get("accuracy")) is not None
    ]
    return {
        "present": bool(report),
        "caveats": caveats(report) if report else [],
        "colour_blind": colour_blind_line(colour_blind(report)) if report else None,
        "headline": headline,
        "per_class_columns": PER_CLASS_METRICS,
        "per_class": per_class,
        "confusion": heat_rows(matrix, classes) if matrix else [],
        "classes": classes,
        "curves": [svg for svg in curves if svg],
        "reliability": reliability_svg(bins, title="Reliability (test split)") if bins else "",
        "baselines": baselines,
        "comparison": comparison,
        "config": _dict(report.get("config")),
        "data": _dict(report.get("data")),
        **_validity(report),
    }
