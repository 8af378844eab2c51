"""The out-of-scope guard at run time: Mahalanobis distance on penultimate-layer features.

An image's score is the distance to the nearest class mean,
``min_k sqrt((f - mu_k)^T P (f - mu_k))``, with one precision matrix ``P`` shared by all
classes; an image scored above the threshold is "out of scope". Fitting the means, ``P``
and the threshold is offline work (``training.ood.fit_guard``, which also describes the
method); this module scores, saves and loads a fitted guard.

Features come from the input of the final ``probabilities`` layer. The predictor asks
the model for features and probabilities in one call (a two-output model).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

OOD_FILE = "ood.npz"
METHOD = "mahalanobis"
DEFAULT_QUANTILE = 0.99
OUTPUT_LAYER = "probabilities"


def feature_layer(model) -> str:
    """Name of the layer whose output feeds the final ``probabilities`` layer."""
    tensor = model.get_layer(OUTPUT_LAYER).input
    return tensor._keras_history.operation.name


def two_output_model(model, layer: str):
    """``image -> (features, probabilities)``: both in one forward pass."""
    import keras

    return keras.Model(model.input, [model.get_layer(layer).output, model.output])


@dataclass
class MahalanobisGuard:
    """Fitted guard parameters; ``score`` is the distance, ``flag`` compares it."""

    means: np.ndarray  # (k, d) class means on the training split
    precision: np.ndarray  # (d, d) inverse of the shrunk shared covariance
    threshold: float
    layer: str
    quantile: float = DEFAULT_QUANTILE
    shrinkage: float = 0.0

    def scorer(self) -> GuardScorer:
        """What scoring needs, without the precision matrix: a worker holds only this."""
        # P = L L^T, so (f - mu)^T P (f - mu) = |(f - mu) L|^2: the class means move into
        # that space once. A shrunk covariance's inverse is positive definite, but one fitted
        # on degenerate features (an untrained network's dead units) may not be numerically:
        # then L = V sqrt(max(eigenvalues, 0)), which drops the directions it cannot weigh.
        precision = np.asarray(self.precision, np.float64)
        try:
            factor = np.linalg.cholesky(precision)
        except np.linalg.LinAlgError:
            values, vectors = np.linalg.eigh(precision)
            factor = vectors * np.sqrt(np.clip(values, 0.0, None))
        return GuardScorer(factor, np.asarray(self.means, np.float64) @ factor, self.threshold)

    @cached_property
    def _scorer(self) -> GuardScorer:
        return self.scorer()

    def score(self, features: np.ndarray) -> np.ndarray:
        return self._scorer.score(features)

    def flag(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def save(self, path: Path) -> Path:
        with Path(path).open("wb") as fh:  # a file handle: savez adds no ".npz" suffix
            np.savez(
                fh,
                means=self.means,
                precision=self.precision,
                threshold=np.float64(self.threshold),
                quantile=np.float64(self.quantile),
                shrinkage=np.float64(self.shrinkage),
                layer=np.array(self.layer),
            )
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> MahalanobisGuard:
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(
                means=z["means"],
                precision=z["precision"],
                threshold=float(z["threshold"]),
                layer=str(z["layer"]),
                quantile=float(z["quantile"]),
                shrinkage=float(z["shrinkage"]),
            )

    def manifest_entry(self, file_hash: str) -> dict:
        return {
            "method": METHOD,
            "layer": self.layer,
            "threshold": self.threshold,
            "quantile": self.quantile,
            "shrinkage": self.shrinkage,
            "file": OOD_FILE,
            "sha256": file_hash,
        }


@dataclass(frozen=True)
class GuardScorer:
    """A fitted guard reduced to scoring: the precision's Cholesky factor ``L`` and the class
    means times ``L``. The distance is then a plain Euclidean one: one (n, d) x (d, d)
    product per batch instead of a (d, d) quadratic form per image and class, which cost a
    ResNet-50 worker a third of a second per case of 16 (#13), and never negative. It
    holds one d x d matrix, as the guard it came from did."""

    factor: np.ndarray
    whitened_means: np.ndarray
    threshold: float

    def score(self, features: np.ndarray) -> np.ndarray:
        z = np.asarray(features, np.float64).reshape(len(features), -1) @ self.factor
        d2 = ((z[:, None, :] - self.whitened_means[None, :, :]) ** 2).sum(axis=2)  # (n, k)
        return np.sqrt(d2.min(axis=1))
