"""Fitting the out-of-scope guard (offline): per-layer Gaussians, input checks, thresholds.

Method (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution
samples"): on the training split, fit one mean per class and ONE covariance shared by
all classes (of the class-centred features) with Ledoit-Wolf shrinkage, because a
128- or 1024-dimensional covariance from a few thousand images is otherwise singular.
An image's score is its Mahalanobis distance to the nearest class mean.

:func:`fit_guard` builds the default :class:`runtime.guard.MultiGuard`: that distance on
the pooled outputs of three convolutional stages (which see texture and layout that the
penultimate features of a classifier no longer keep) and on the penultimate features,
plus input-level checks (blur, fine texture, blank, halftone). Lee et al. also combine
several layers; their logistic combination needs out-of-distribution examples to fit,
so here each check keeps its own threshold and any check can flag.

Thresholds come from the validation split only, and from a stain-augmented copy of it
(the training recipe's stain jitter), and the Gaussians from the training split and a
stain-augmented copy: a smear whose stain differs only as much as the model was trained
to tolerate is then not out of scope for its colour. All checks share one validation
quantile, found by bisection so that together they flag ``target`` (1 %) of validation
images; a check with a fixed threshold (``blank``) keeps it, and the validation images
it flags count towards the target (unless half of them are beyond it: then it is fitted
too). :class:`FeatureExtractor` is for offline work on whole splits (the worker's
predictor takes the features from its own compiled call).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from runtime.guard import (
    DEFAULT_QUANTILE,
    INPUT_CHECKS,
    METHOD,
    MULTI_METHOD,
    Check,
    FeatureSpec,
    Guard,
    MahalanobisGuard,
    MultiGuard,
    block_layers,
    check_weights,
    feature_layer,
    feature_network,
)

#: The fraction of validation images the multi-check guard flags, all checks together.
DEFAULT_TARGET = 1.0 - DEFAULT_QUANTILE


class FeatureExtractor:
    """Compiled ``uint8 images -> (features, probabilities)``; build once, call many times."""

    def __init__(self, model, spec: FeatureSpec | str):
        import tensorflow as tf

        if isinstance(spec, str):
            spec = FeatureSpec((spec,), input_statistics=())
        both = feature_network(model, spec)
        self.n_classes = int(model.output.shape[-1])
        # One trace for every batch size, the last short batch included.
        self._forward = tf.function(
            lambda b: both(tf.cast(b, tf.float32), training=False),
            input_signature=[tf.TensorSpec([None, *model.input.shape[1:]], tf.uint8)],
        )

    def __call__(self, x: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, d), probabilities (N, k)) for uint8 images, in order."""
        import tensorflow as tf

        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            f, p = self._forward(tf.constant(x[i : i + batch_size], tf.uint8))
            feats.append(np.asarray(f, np.float64).reshape(len(f), -1))
            probs.append(np.asarray(p, np.float64))
        if not feats:
            return np.zeros((0, 0)), np.zeros((0, self.n_classes))
        return np.concatenate(feats), np.concatenate(probs)


def _class_gaussian(f: np.ndarray, y: np.ndarray, n_classes: int):
    """Class means and the Ledoit-Wolf precision of the class-centred features."""
    from sklearn.covariance import LedoitWolf

    means = np.stack(
        [f[y == k].mean(axis=0) if np.any(y == k) else f.mean(axis=0) for k in range(n_classes)]
    )
    lw = LedoitWolf(assume_centered=True).fit(f - means[y])
    return means, lw.precision_, float(lw.shrinkage_)


def fit_features(
    train_features: np.ndarray,
    train_y: np.ndarray,
    val_features: np.ndarray,
    *,
    layer: str,
    n_classes: int,
    quantile: float = DEFAULT_QUANTILE,
) -> MahalanobisGuard:
    """The one-layer guard for features already extracted: means and shrunk precision
    from training, the threshold from validation."""
    means, precision, shrinkage = _class_gaussian(
        np.asarray(train_features, np.float64), np.asarray(train_y), n_classes
    )
    guard = MahalanobisGuard(
        means=means,
        precision=precision,
        threshold=np.inf,
        layer=layer,
        quantile=quantile,
        shrinkage=shrinkage,
    )
    guard.threshold = float(np.quantile(guard.score(val_features), quantile))
    return guard


def stain_augmented(x: np.ndarray, seed: int = 0, recipe=None) -> np.ndarray:
    """A copy of uint8 images with a colour recipe's jitter (``training.stain.random_stain``;
    ``recipe`` a ``StainAugmentConfig``, the light one by default), one draw per image."""
    import tensorflow as tf

    from training.stain import STAIN_AUGMENT, random_stain

    cfg = recipe or STAIN_AUGMENT
    seeds = np.stack([np.full(len(x), seed), np.arange(len(x))], axis=1).astype(np.int64)
    ds = (
        tf.data.Dataset.from_tensor_slices((x, seeds))
        .map(lambda image, s: random_stain(image, s, cfg))
        .batch(256)
    )
    parts = [np.asarray(b) for b in ds]
    return np.concatenate(parts) if parts else x.copy()


def _thresholds(raw_val: np.ndarray, q: float, fixed: np.ndarray) -> np.ndarray:
    """Each check's validation quantile ``q``, or its fixed threshold (NaN: none)."""
    return np.where(np.isnan(fixed), np.quantile(raw_val, q, axis=0), fixed)


def _common_quantile(raw_val: np.ndarray, target: float, fixed: np.ndarray) -> float:
    """The validation quantile at which all checks' thresholds together flag ``target``."""

    def union(q: float) -> float:
        return float((raw_val > _thresholds(raw_val, q, fixed)).any(axis=1).mean())

    lo, hi = 0.5, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if union(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def fit_checks(
    spec: FeatureSpec,
    train_features: np.ndarray,
    train_y: np.ndarray,
    val_features: np.ndarray,
    *,
    layer_sizes: list[int],
    n_classes: int,
    target: float = DEFAULT_TARGET,
    stain_augmented: bool = True,
) -> MultiGuard:
    """The multi-check guard for features already extracted (``spec``'s layout)."""
    checks = []
    at = 0
    f_tr = np.asarray(train_features, np.float64)
    y = np.asarray(train_y)
    for i, (name, size) in enumerate(zip(spec.layers, layer_sizes, strict=True)):
        means, precision, _ = _class_gaussian(f_tr[:, at : at + size], y, n_classes)
        checks.append(Check(f"layer {name}", "layer", i, 0.0, 1.0, (), means, precision))
        at += size
    fixed = [np.nan] * len(checks)
    for check in INPUT_CHECKS:
        # A graph computing older statistics (a refit of an old spec) has no input for it.
        if set(check.weights) <= set(spec.input_statistics):
            weights = check_weights(check, spec.input_statistics)
            checks.append(Check(check.name, "input", -1, 0.0, 1.0, weights))
            fixed.append(np.nan if check.threshold is None else check.threshold)
    guard = MultiGuard(spec, checks, quantile=1.0, target=target, stain_augmented=stain_augmented)
    raw = guard.raw_scores(val_features)
    centres = np.median(raw, axis=0)
    # A fixed threshold that half the validation images are beyond was set for other
    # images (fields with few cells, a size far from 128 px): fit that check instead.
    fixed_at = np.where(np.array(fixed) > centres, np.array(fixed), np.nan)
    guard.quantile = _common_quantile(raw, target, fixed_at)
    thresholds = _thresholds(raw, guard.quantile, fixed_at)
    for c, t, m in zip(checks, thresholds, centres, strict=True):
        c.threshold, c.centre = float(t), float(m)
    return guard


def fit_guard(
    model,
    x_train,
    y_train,
    x_val,
    n_classes: int,
    batch_size: int = 32,
    target: float = DEFAULT_TARGET,
    *,
    stain_augment: bool = True,
    recipe=None,
    seed: int = 0,
) -> MultiGuard:
    """Fit the multi-check guard: Gaussians on the training split, thresholds on
    validation, both with a copy jittered by the colour recipe the model was trained with
    (``recipe``, a ``training.stain.StainAugmentConfig``; the light one by default) unless
    ``stain_augment`` is False."""
    spec = FeatureSpec((*block_layers(model), feature_layer(model)))
    extract = FeatureExtractor(model, spec)
    x_tr, y_tr, x_va = np.asarray(x_train), np.asarray(y_train), np.asarray(x_val)
    if stain_augment:
        x_tr = np.concatenate([x_tr, stain_augmented(x_tr, seed, recipe)])
        y_tr = np.concatenate([y_tr, y_tr])
        x_va = np.concatenate([x_va, stain_augmented(x_va, seed + 1, recipe)])
    f_tr, _ = extract(x_tr, batch_size)
    f_va, _ = extract(x_va, batch_size)
    sizes = [int(np.prod(model.get_layer(n).output.shape[-1:])) for n in spec.layers]
    return fit_checks(
        spec,
        f_tr,
        y_tr,
        f_va,
        layer_sizes=sizes,
        n_classes=n_classes,
        target=target,
        stain_augmented=stain_augment,
    )


def guard_facts(guard: Guard) -> dict[str, Any]:
    """What a report says about a guard: method, checks, thresholds, how it was fitted."""
    if isinstance(guard, MahalanobisGuard):
        return {
            "method": METHOD,
            "layer": guard.layer,
            "threshold": guard.threshold,
            "quantile": guard.quantile,
            "shrinkage": guard.shrinkage,
            "checks": [f"layer {guard.layer}"],
        }
    return {
        "method": MULTI_METHOD,
        "layer": guard.layer,
        "threshold": guard.threshold,
        "quantile": guard.quantile,
        "target": guard.target,
        "stain_augmented": guard.stain_augmented,
        "checks": [c.name for c in guard.checks],
        "check_thresholds": {c.name: c.threshold for c in guard.checks},
    }


def reason_counts(reasons: list[str | None]) -> dict[str, int]:
    """How many images each check flagged (the most decisive check per image)."""
    return dict(Counter(r for r in reasons if r is not None).most_common())
