"""Metrics, calibration and the "needs review" threshold, from predicted probabilities.

Pure numpy + scikit-learn (no TensorFlow), so it can be tested and reused on any model's
output. Temperature and threshold are fitted on the validation split and only applied to
the test split, which nothing was tuned on; the temperature is applied by
``runtime.calibration.apply_temperature``, as in the worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from runtime.calibration import apply_temperature

ECE_BINS = 15
#: Images not flagged "needs review" must reach this accuracy on validation.
REVIEW_TARGET_ACCURACY = 0.99
_EPS = 1e-12


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] minimising validation NLL (golden-section search on log T)."""
    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2

    def f(log_t: float) -> float:
        return nll(apply_temperature(probs, math.exp(log_t)), y)

    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return float(round(math.exp((a + b) / 2), 6))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per-bin confidence, accuracy and count on equal-width confidence bins, and the ECE."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        acc: float | None = None
        cnf: float | None = None
        if n:
            acc, cnf = float(correct[m].mean()), float(conf[m].mean())
            ece += n / len(y) * abs(acc - cnf)
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "accuracy": acc,
                "confidence": cnf,
            }
        )
    return {"ece": float(ece), "bins": rows}


def choose_threshold(
    probs: np.ndarray, y: np.ndarray, target: float = REVIEW_TARGET_ACCURACY
) -> float:
    """Lowest confidence t such that validation images with confidence >= t are >= target right.

    Images below t get the "needs review" flag. If even the most confident images miss
    the target, t is 1.0 and everything is flagged.
    """
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    for t in np.round(np.arange(0.0, 1.0001, 0.01), 2):
        accepted = conf >= t
        if accepted.sum() and correct[accepted].mean() >= target:
            return float(t)
    return 1.0


def review_stats(probs: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    conf = probs.max(axis=1)
    accepted = conf >= threshold
    correct = probs.argmax(axis=1) == y
    return {
        "threshold": float(threshold),
        "flagged_fraction": float(1 - accepted.mean()),
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
        "flagged_accuracy": float(correct[~accepted].mean()) if (~accepted).any() else None,
    }


def classification_metrics(probs: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, per-class P/R(sensitivity)/specificity/F1/support/AUC, averages, confusion."""
    n = len(classes)
    pred = probs.argmax(axis=1)
    labels = list(range(n))
    cm = confusion_matrix(y, pred, labels=labels)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    total = cm.sum()
    per_class = {}
    aucs = []
    for i, name in enumerate(classes):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        tn = total - tp - fp - fn
        spec = float(tn / (tn + fp)) if tn + fp else None
        positives = y == i
        auc = float(roc_auc_score(positives, probs[:, i])) if 0 < positives.sum() < len(y) else None
        if auc is not None:
            aucs.append(auc)
        per_class[name] = {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "sensitivity": float(r[i]),
            "specificity": spec,
            "f1": float(f[i]),
            "support": int(s[i]),
            "roc_auc": auc,
        }
    weights = s / max(1, s.sum())
    specs = [v["specificity"] for v in per_class.values() if v["specificity"] is not None]
    return {
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_precision": float(p.mean()),
        "macro_recall": float(r.mean()),
        "macro_specificity": float(np.mean(specs)) if specs else None,
        "macro_f1": float(f.mean()),
        "weighted_precision": float((p * weights).sum()),
        "weighted_recall": float((r * weights).sum()),
        "weighted_f1": float((f * weights).sum()),
        "macro_roc_auc": float(np.mean(aucs)) if aucs else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "n": len(y),
    }


def full_evaluation(
    val_probs: np.ndarray,
    val_y: np.ndarray,
    test_probs: np.ndarray,
    test_y: np.ndarray,
    classes: Sequence[str],
    *,
    temperature: float | None = None,
    threshold: float | None = None,
    review_target: float | None = REVIEW_TARGET_ACCURACY,
) -> dict:
    """Test metrics plus calibration; temperature and threshold come from validation.

    A given ``threshold`` is used as is (``review_target`` then only labels the report).
    """
    if temperature is None:
        temperature = fit_temperature(val_probs, val_y)
    cal_val = apply_temperature(val_probs, temperature)
    cal_test = apply_temperature(test_probs, temperature)
    if threshold is None:
        review_target = REVIEW_TARGET_ACCURACY if review_target is None else review_target
        threshold = choose_threshold(cal_val, val_y, review_target)
    metrics = classification_metrics(test_probs, test_y, classes)
    before, after = reliability(test_probs, test_y), reliability(cal_test, test_y)
    metrics.update(
        ece_before=before["ece"],
        ece_after=after["ece"],
        nll_before=nll(test_probs, test_y),
        nll_after=nll(cal_test, test_y),
        temperature=float(temperature),
        confidence_threshold=float(threshold),
        review_target_accuracy=None if review_target is None else float(review_target),
        review=review_stats(cal_test, test_y, threshold),
        validation_accuracy=float((val_probs.argmax(1) == val_y).mean()),
    )
    return {"test": metrics, "reliability_before": before, "reliability_after": after}
