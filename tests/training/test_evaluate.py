"""Metrics, calibration and the needs-review threshold on hand-made probabilities."""

import numpy as np
import pytest

from runtime.calibration import apply_temperature
from training import evaluate as E
from training.baselines import baseline_warning, run_baselines
from training.synth import generate


def _overconfident(n=600, seed=0):
    """A 3-class model that is right 70 % of the time but always ~97 % sure."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.uniform(size=n) < 0.7, y, (y + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), 0.015)
    probs[np.arange(n), pred] = 0.97
    return probs, y


def test_per_class_metrics_and_specificity():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.9 + 0.1 / 3
    m = E.classification_metrics(probs, y, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    b = m["per_class"]["b"]
    assert b["recall"] == 1.0 and b["precision"] == pytest.approx(2 / 3)
    assert b["specificity"] == pytest.approx(3 / 4)  # one of four non-b images called b
    assert m["per_class"]["a"]["support"] == 2
    assert set(m) >= {"macro_f1", "weighted_f1", "macro_roc_auc", "macro_specificity"}


def test_temperature_scaling_fixes_overconfidence():
    val_p, val_y = _overconfident(seed=1)
    test_p, test_y = _overconfident(seed=2)
    t = E.fit_temperature(val_p, val_y)
    assert t > 1.5  # softening
    assert E.nll(apply_temperature(test_p, t), test_y) < E.nll(test_p, test_y)
    before = E.reliability(test_p, test_y)["ece"]
    after = E.reliability(apply_temperature(test_p, t), test_y)["ece"]
    assert before == pytest.approx(0.27, abs=0.04)
    assert after < 0.05
    assert np.allclose(apply_temperature(test_p, 1.0), test_p / test_p.sum(1, keepdims=True))


def test_threshold_is_the_lowest_reaching_the_target_on_validation():
    y = np.zeros(10, int)
    conf = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5])
    probs = np.stack([conf, 1 - conf], axis=1)
    probs[[6, 8], :] = probs[[6, 8], ::-1]  # wrong answers at 0.65 and 0.55 confidence
    assert E.choose_threshold(probs, y, target=1.0) == pytest.approx(0.66)
    assert E.choose_threshold(probs, y, target=0.8) == 0.0
    everything_wrong = probs[:, ::-1]
    assert E.choose_threshold(everything_wrong, y, target=0.95) == 1.0


def test_full_evaluation_reports_what_the_manifest_needs():
    val_p, val_y = _overconfident(seed=3)
    test_p, test_y = _overconfident(seed=4)
    ev = E.full_evaluation(val_p, val_y, test_p, test_y, ["a", "b", "c"])
    t = ev["test"]
    for key in (
        "accuracy",
        "macro_f1",
        "ece_before",
        "ece_after",
        "temperature",
        "confidence_threshold",
        "review",
    ):
        assert key in t
    assert 0 <= t["confidence_threshold"] <= 1


def test_baselines_run_on_the_same_split_and_keep_their_predictions():
    x, y = generate(per_class=10, size=32, seed=5)
    res = run_baselines(x[::2], y[::2], x[1::2], y[1::2])
    assert set(res) == {"colour_stats", "thumbnail_8x8"}
    assert res["colour_stats"]["n_features"] == 30 and res["thumbnail_8x8"]["n_features"] == 192
    assert len(res["colour_stats"]["predictions"]) == len(y[1::2])


def _baseline(pred, y):
    pred = np.asarray(pred)
    return {"accuracy": float((pred == y).mean()), "macro_f1": 0.0, "predictions": list(pred)}


def test_the_cnn_must_beat_the_baseline_significantly_on_the_same_images():
    y = np.zeros(600, int)
    base = np.zeros(600, int)
    base[:24] = 1  # baseline: 96 % right
    cnn_clear = np.zeros(600, int)
    cnn_clear[590:] = 1  # 98.3 %, and right on all 24 images the baseline misses
    baselines = {"colour_stats": _baseline(base, y)}
    assert baseline_warning(cnn_clear, y, baselines) is None
    assert baselines["colour_stats"]["mcnemar_p"] < 0.05  # 24 vs 10 discordant images
    assert baselines["colour_stats"]["only_cnn_right"] == 24
    assert baselines["colour_stats"]["only_baseline_right"] == 10
    cnn_same = base.copy()
    cnn_same[:2] = 0  # two more right: not a clear difference
    warning = baseline_warning(cnn_same, y, baselines)
    assert warning is not None and "not clearly above" in warning
    warning = baseline_warning(base, y, baselines)
    assert warning is not None and "colour_stats" in warning
