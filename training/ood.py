"""Fitting the out-of-scope guard (offline): class means, shared covariance, threshold.

Method (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution
samples"): on the training split, fit one mean per class and ONE covariance shared by
all classes (of the class-centred features) with Ledoit-Wolf shrinkage, because a
128- or 1024-dimensional covariance from a few thousand images is otherwise singular.
The threshold is the ``quantile`` (0.99) of the scores of the validation split, so by
construction about 1 % of in-distribution images are flagged; anything further from
every class than that is "out of scope". The fitted guard is a
:class:`runtime.guard.MahalanobisGuard`, which is all a worker needs to score images;
:class:`FeatureExtractor` is for offline work on whole splits (the worker's predictor
takes the features from its own compiled call).
"""

from __future__ import annotations

import numpy as np

from runtime.guard import DEFAULT_QUANTILE, MahalanobisGuard, feature_layer, two_output_model


class FeatureExtractor:
    """Compiled ``uint8 images -> (features, probabilities)``; build once, call many times."""

    def __init__(self, model, layer: str):
        import tensorflow as tf

        both = two_output_model(model, layer)
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


def fit_features(
    train_features: np.ndarray,
    train_y: np.ndarray,
    val_features: np.ndarray,
    *,
    layer: str,
    n_classes: int,
    quantile: float = DEFAULT_QUANTILE,
) -> MahalanobisGuard:
    """The guard for features already extracted: means and shrunk precision from training,
    the threshold from validation."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(train_features, np.float64)
    y = np.asarray(train_y)
    means = np.stack(
        [f[y == k].mean(axis=0) if np.any(y == k) else f.mean(axis=0) for k in range(n_classes)]
    )
    lw = LedoitWolf(assume_centered=True).fit(f - means[y])
    guard = MahalanobisGuard(
        means=means,
        precision=lw.precision_,
        threshold=np.inf,
        layer=layer,
        quantile=quantile,
        shrinkage=float(lw.shrinkage_),
    )
    guard.threshold = float(np.quantile(guard.score(val_features), quantile))
    return guard


def fit_guard(
    model,
    x_train,
    y_train,
    x_val,
    n_classes: int,
    batch_size: int = 32,
    quantile: float = DEFAULT_QUANTILE,
) -> MahalanobisGuard:
    """Fit the guard on a trained model's training-split features, threshold on validation."""
    layer = feature_layer(model)
    extract = FeatureExtractor(model, layer)
    f_tr, _ = extract(x_train, batch_size)
    f_va, _ = extract(x_val, batch_size)
    return fit_features(f_tr, y_train, f_va, layer=layer, n_classes=n_classes, quantile=quantile)
