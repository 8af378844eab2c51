"""Cheap baselines that every report shows beside the CNN, so a figure is read honestly.

On the Taleqani set colour alone reaches ~89 %: a CNN at 90 % has learnt little more
than stain colour. Both baselines train on the same training split and are scored on
the same test split as the CNN.
"""

from __future__ import annotations

import numpy as np

from runtime.preprocess import resize_for_model

HIST_BINS = 8
THUMB_SIZE = 8
#: The CNN must beat the best baseline with a one-sided McNemar p below this. (scikit-learn
#: is imported inside the functions, so reading this constant stays cheap for the web app.)
SIGNIFICANCE = 0.05


def colour_features(images: np.ndarray) -> np.ndarray:
    """Per-channel RGB mean and std plus a coarse 8-bin histogram per channel (30 numbers)."""
    x = images.reshape(len(images), -1, 3).astype(np.float32)
    mean, std = x.mean(axis=1) / 255, x.std(axis=1) / 255
    hist = (
        np.stack(
            [
                np.stack(
                    [np.histogram(img[:, c], bins=HIST_BINS, range=(0, 256))[0] for c in range(3)]
                )
                for img in x
            ]
        ).reshape(len(images), -1)
        / x.shape[1]
    )
    return np.concatenate([mean, std, hist], axis=1)


def thumbnail_features(images: np.ndarray) -> np.ndarray:
    """The whole field shrunk to 8x8 RGB (192 numbers): layout and colour, no cell detail."""
    return np.stack([resize_for_model(img, THUMB_SIZE).reshape(-1) / 255.0 for img in images])


def _classifier(seed: int):
    """The one baseline classifier: standardised features, logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=3000, C=1.0, random_state=seed)
    )


def _scores(y_true, pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, average="macro", zero_division=0)),
        "predictions": [int(v) for v in pred],
    }


def _fit_score(f_train, y_train, f_test, y_test, seed: int) -> dict:
    clf = _classifier(seed)
    clf.fit(f_train, y_train)
    return {**_scores(y_test, clf.predict(f_test)), "n_features": int(f_train.shape[1])}


def run_baselines(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> dict:
    """Logistic regression on colour statistics and on 8x8 thumbnails, scored on test."""
    return {
        "colour_stats": {
            "description": "logistic regression on per-channel RGB mean/std + 8-bin histograms",
            **_fit_score(colour_features(x_train), y_train, colour_features(x_test), y_test, seed),
        },
        "thumbnail_8x8": {
            "description": "logistic regression on the 8x8 RGB thumbnail of the whole field",
            **_fit_score(
                thumbnail_features(x_train), y_train, thumbnail_features(x_test), y_test, seed
            ),
        },
    }


def colour_baseline_cv(features: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5):
    """Cross-validated colour-statistics baseline on one labelled set (no separate split).

    For a set a model was not trained on, such as a site's own images: how well colour
    alone separates its classes. Stratified k-fold, k at most the smallest class's size.
    Returns accuracy, macro F1 and the per-image predictions, or {"skipped": why}.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = np.bincount(y)
    counts = counts[counts > 0]
    if len(counts) < 2:
        return {"skipped": "colour baseline needs at least two classes"}
    k = int(min(folds, counts.min()))
    if k < 2:
        return {"skipped": "colour baseline needs at least two images of every class"}
    pred = cross_val_predict(
        _classifier(seed), features, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed)
    )
    return {
        "description": f"logistic regression on colour statistics, {k}-fold cross-validated "
        "on this set",
        **_scores(y, pred),
        "folds": k,
    }


def mcnemar_p(cnn_correct: np.ndarray, base_correct: np.ndarray) -> float:
    """One-sided exact McNemar p-value that the CNN is right more often than the baseline."""
    # scipy ships no types and scipy-stubs is not in the locked requirements.
    from scipy.stats import binomtest

    cnn_only = int(np.sum(cnn_correct & ~base_correct))
    base_only = int(np.sum(~cnn_correct & base_correct))
    if cnn_only + base_only == 0:
        return 1.0
    return float(binomtest(cnn_only, cnn_only + base_only, 0.5, alternative="greater").pvalue)


def baseline_warning(
    cnn_pred: np.ndarray, y_test: np.ndarray, baselines: dict, alpha: float = SIGNIFICANCE
) -> str | None:
    """A warning unless the CNN beats every baseline on the same test images, significantly.

    "Clearly above" is a paired test, not a margin: on the same images, the CNN must be
    right where the baseline is wrong more often than the reverse (exact McNemar test,
    one-sided p < alpha). Adds ``cnn_minus_baseline`` and ``mcnemar_p`` to each entry.
    """
    cnn_pred, y_test = np.asarray(cnn_pred), np.asarray(y_test)
    cnn_correct = cnn_pred == y_test
    cnn_acc = float(cnn_correct.mean()) if len(y_test) else 0.0
    problems = []
    for name, entry in baselines.items():
        base_correct = np.asarray(entry["predictions"]) == y_test
        entry["cnn_minus_baseline"] = cnn_acc - entry["accuracy"]
        entry["mcnemar_p"] = mcnemar_p(cnn_correct, base_correct)
        entry["only_cnn_right"] = int(np.sum(cnn_correct & ~base_correct))
        entry["only_baseline_right"] = int(np.sum(~cnn_correct & base_correct))
        if cnn_acc <= entry["accuracy"] or entry["mcnemar_p"] >= alpha:
            problems.append(
                f"{name} {entry['accuracy']:.1%} (McNemar p = {entry['mcnemar_p']:.2g})"
            )
    if problems:
        return (
            f"The CNN ({cnn_acc:.1%}) is not clearly above the cheap baseline(s) on the same "
            f"test images: {'; '.join(problems)}. It may have learnt little beyond colour "
            "or layout."
        )
    return None
