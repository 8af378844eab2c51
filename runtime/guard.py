"""The out-of-scope guard at run time: named checks on features of the same compiled call.

Two kinds of guard, told apart by the manifest's ``ood.method``:

- ``mahalanobis`` (format 2, one check): the Mahalanobis distance of the penultimate
  layer's features to the nearest class mean, ``min_k sqrt((f - mu_k)^T P (f - mu_k))``
  with one precision matrix ``P`` shared by all classes (:class:`MahalanobisGuard`).
- ``multi-check`` (:class:`MultiGuard`): the same distance on the globally pooled
  outputs of several blocks and on the penultimate features, one check per layer, plus
  input-level checks on :data:`INPUT_STATISTICS` (blur; too much fine texture, such as
  noise or a screen's pixel grid; next to no structure at the scale of cells, such as an
  empty field; a periodic grid of fine dots, such as a printed picture's halftone; in
  guards fitted before the halftone check, contrast far above a smear's). Each
  check's score is put on one scale, ``(raw - centre) / (threshold - centre)``
  (validation median and threshold), so 1.0 is every check's threshold; the image's
  score is the largest, and the check behind it is the reason it was flagged.

The guard's graph (:func:`feature_network`) outputs every feature the checks need and
the probabilities together, so the worker's ONNX graph stays one call. Fitting is
offline work (``training.ood``); this module scores, saves and loads a fitted guard.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

OOD_FILE = "ood.npz"
METHOD = "mahalanobis"
MULTI_METHOD = "multi-check"
DEFAULT_QUANTILE = 0.99
OUTPUT_LAYER = "probabilities"
#: Outputs of ``runtime.layers.InputStatistics`` in a guard's graph, in order.
INPUT_STATISTICS = ("focus", "structure", "quarter_periodicity")
#: What guards fitted before ``quarter_periodicity`` read (their ``halftone`` check read
#: ``periodicity`` over the whole field); they still load and score as they did.
HALFTONE_INPUT_STATISTICS = ("focus", "structure", "periodicity")
#: What guards fitted before ``periodicity`` read (with a ``high contrast`` check on the
#: luma's ``contrast``); they still load and score as they did.
STRUCTURE_INPUT_STATISTICS = ("focus", "contrast", "structure")
#: What guards fitted before the ``structure`` statistic read (their ``blank`` check
#: summed ``contrast`` and ``dark``); they still load and score as they did.
LEGACY_INPUT_STATISTICS = ("focus", "contrast", "dark")
#: A field with less cell-scale structure than this share of its area has no cells to
#: classify: ``blank``'s threshold (see :data:`INPUT_CHECKS`).
BLANK_MAX_STRUCTURE = 0.03
#: ``structure`` is log10 of a share, which needs a floor: a field with no edge at all.
STRUCTURE_FLOOR = 1e-3


@dataclass(frozen=True)
class InputCheck:
    """An input-level check: its raw score is the weighted sum of input statistics (larger
    is stranger); ``threshold`` (raw units), where set, is used instead of a fitted one."""

    name: str
    weights: dict[str, float]
    threshold: float | None = None


def structure_log(share: float) -> float:
    """The ``structure`` statistic for a share of the field."""
    return float(np.log10(share + STRUCTURE_FLOOR))


#: The checks a new guard fits. ``blank`` looks at ``structure`` only (the share of the
#: field covered by edges at the scale of cells, in luma): stain, grayscale and hue barely
#: move it, and a few dust specks cover too little of an empty field to fake it. Being a
#: share of the field, it takes a fixed threshold, :data:`BLANK_MAX_STRUCTURE`, rather
#: than a fitted one: the colour jitter the guard is fitted with washes a few pale
#: smears out to white (brightness x1.25 clips their cells away), which pushed a fitted
#: threshold out past empty fields (issue #14), and where they did not, the fitted one
#: (one extreme of ~1,000 validation images) flagged 2 % of smears under the robustness
#: table's brightness x1.2, which the model reads as well as clean ones.
#: ``halftone`` adds ``quarter_periodicity`` (a printed picture's dot grid, in the second
#: largest quarter of the field) to ``focus`` (dots are fine detail): a third of the
#: photos of paper passed every other check. The weight 4 puts a periodicity of 0.25 (a
#: smear's 99th percentile over the whole field) level with a focus step of 1, where a
#: pure dot grid scores ~0.8. Over the whole field (guards fitted before quarters), the
#: plain paper around a picture filling a quarter to half of the photo diluted the
#: period below the threshold: 5 % of photos of paper passed on the default model.
#: New guards have no ``high contrast`` check (older
#: ones keep theirs): on the default model it decided no generated non-smear of any kind,
#: and it alone flagged 14 % of test smears at saturation x1.5 (a stronger stain darkens
#: cells in luma), which the model reads at 95 %; the contrast of the HSV value instead
#: moves with grayscale just as far (issue #14).
INPUT_CHECKS: tuple[InputCheck, ...] = (
    InputCheck("blur", {"focus": -1.0}),
    InputCheck("fine texture", {"focus": 1.0}),
    InputCheck("blank", {"structure": -1.0}, threshold=-structure_log(BLANK_MAX_STRUCTURE)),
    InputCheck("halftone", {"focus": 1.0, "quarter_periodicity": 4.0}),
)


def check_weights(check: InputCheck, statistics: tuple[str, ...]) -> tuple[float, ...]:
    """An input check's weights in the order of a graph's ``statistics``."""
    return tuple(check.weights.get(name, 0.0) for name in statistics)


def feature_layer(model) -> str:
    """Name of the layer whose output feeds the final ``probabilities`` layer."""
    tensor = model.get_layer(OUTPUT_LAYER).input
    return tensor._keras_history.operation.name


def two_output_model(model, layer: str):
    """``image -> (features, probabilities)``: both in one forward pass."""
    return feature_network(model, FeatureSpec((layer,), input_statistics=()))


def block_layers(model, count: int = 3) -> tuple[str, ...]:
    """The last layer of each of ``count`` convolutional stages after the first.

    A stage is a run of layers with the same spatial size; the first one (full
    resolution) sees little but pixels, the deepest is summarised by the penultimate
    features already. For CML-1 at any size: ``bn2``, ``bn3``, ``bn4``. A zero-padding
    layer is not a stage: ONNX Runtime folds the padding into the next convolution
    unless something else reads it, and read, it cost MobileNet ~1 ms an image in
    copies out of and back into ONNX Runtime's blocked layout.
    """
    import keras

    last: dict[tuple, str] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.ZeroPadding2D):
            continue
        shape = getattr(layer, "output", None)
        shape = None if shape is None else tuple(shape.shape)
        if shape is not None and len(shape) == 4 and layer.name != model.layers[0].name:
            last[shape[1:3]] = layer.name  # dicts keep first-seen order: stage order
    return tuple(list(last.values())[1 : 1 + count])


@dataclass(frozen=True)
class FeatureSpec:
    """What the guard's graph outputs beside the probabilities: layer outputs (4-D ones
    averaged over space), then the named input statistics (none: empty), concatenated."""

    layers: tuple[str, ...]
    input_statistics: tuple[str, ...] = INPUT_STATISTICS


def feature_network(model, spec: FeatureSpec):
    """``image -> (features, probabilities)`` in one forward pass of ``model``."""
    import keras

    from runtime.layers import InputStatistics

    parts = []
    for name in spec.layers:
        out = model.get_layer(name).output
        if len(out.shape) == 4:
            out = keras.layers.GlobalAveragePooling2D(name=f"guard_pool_{name}")(out)
        parts.append(out)
    if spec.input_statistics:
        parts.append(
            InputStatistics(spec.input_statistics, name="guard_input_statistics")(model.input)
        )
    if len(parts) == 1:
        return keras.Model(model.input, [parts[0], model.output])
    features = keras.layers.Concatenate(name="guard_features")(parts)
    return keras.Model(model.input, [features, model.output])


@dataclass
class MahalanobisGuard:
    """Fitted guard parameters; ``score`` is the distance, ``flag`` compares it."""

    means: np.ndarray  # (k, d) class means on the training split
    precision: np.ndarray  # (d, d) inverse of the shrunk shared covariance
    threshold: float
    layer: str
    quantile: float = DEFAULT_QUANTILE
    shrinkage: float = 0.0

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec((self.layer,), input_statistics=())

    def scorer(self) -> GuardScorer:
        """What scoring needs, without the precision matrix: a worker holds only this."""
        return replace(
            _whitened(self.means, self.precision, self.threshold), name=f"layer {self.layer}"
        )

    @cached_property
    def _scorer(self) -> GuardScorer:
        return self.scorer()

    def score(self, features: np.ndarray) -> np.ndarray:
        return self._scorer.score(features)

    def reasons(self, features: np.ndarray) -> list[str | None]:
        """The check that flagged each image (None where none did)."""
        return [f"layer {self.layer}" if x else None for x in self.flag(features)]

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


@dataclass
class Check:
    """One named check: a raw score per image (larger is stranger), its validation
    median (``centre``) and its threshold. Layer checks carry their class means and
    precision; input checks their weights on the input statistics."""

    name: str
    kind: str  # "layer" or "input"
    index: int  # layer checks: position in the spec's layers
    centre: float
    threshold: float
    weights: tuple[float, ...] = ()  # input checks: one weight per spec's input statistic
    means: np.ndarray | None = None
    precision: np.ndarray | None = None
    #: Layer checks: the whitened form that scores (made from ``precision`` on first use;
    #: a worker's copy keeps only this, see :meth:`MultiGuard.scorer`).
    whitened: GuardScorer | None = None

    def layer_scorer(self) -> GuardScorer:
        if self.whitened is None:
            assert self.means is not None and self.precision is not None
            self.whitened = _whitened(self.means, self.precision, self.threshold)
        return self.whitened


@dataclass
class MultiGuard:
    """Several checks on one feature vector; flagged when any check passes its threshold."""

    spec: FeatureSpec
    checks: list[Check]
    quantile: float  # the validation quantile each check's threshold sits at
    target: float  # the fraction of validation images all checks together flag
    stain_augmented: bool = True  # fitted on stain-augmented images too
    threshold: float = 1.0  # normalised: every check's threshold is 1.0

    @property
    def layer(self) -> str:
        return "+".join(self.spec.layers) + ("+input" if self.spec.input_statistics else "")

    def _split(self, features: np.ndarray) -> list[np.ndarray]:
        f = np.asarray(features, np.float64).reshape(len(features), -1)
        sizes = [c.means.shape[1] for c in self.checks if c.means is not None]
        parts, at = [], 0
        for size in sizes:
            parts.append(f[:, at : at + size])
            at += size
        if self.spec.input_statistics:
            parts.append(f[:, at : at + len(self.spec.input_statistics)])
            at += len(self.spec.input_statistics)
        if at != f.shape[1]:
            raise ValueError(f"the guard expects {at} features per image, got {f.shape[1]}")
        return parts

    def raw_scores(self, features: np.ndarray) -> np.ndarray:
        """(N, checks) raw scores, before normalisation."""
        parts = self._split(features)
        cols = []
        for c in self.checks:
            if c.kind == "layer":
                cols.append(c.layer_scorer().score(parts[c.index]))
            else:
                cols.append(parts[-1] @ np.asarray(c.weights, np.float64))
        return np.stack(cols, axis=1) if cols else np.zeros((len(features), 0))

    def scorer(self) -> MultiGuard:
        """What scoring needs: the same guard with each layer's precision matrix replaced
        by its Cholesky factor (a worker holds one d x d matrix per layer, not two)."""
        checks = [
            replace(c, precision=None, whitened=c.layer_scorer()) if c.kind == "layer" else c
            for c in self.checks
        ]
        return replace(self, checks=checks)

    def check_scores(self, features: np.ndarray) -> np.ndarray:
        """(N, checks) scores on the common scale: 1.0 is each check's threshold."""
        raw = self.raw_scores(features)
        centre = np.array([c.centre for c in self.checks])
        span = np.array([max(c.threshold - c.centre, 1e-9) for c in self.checks])
        return (raw - centre) / span

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.check_scores(features).max(axis=1)

    def flag(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def reasons(self, features: np.ndarray) -> list[str | None]:
        """The check that flagged each image, the most decisive one (None where none did)."""
        return self.judge(features)[1]

    def judge(self, features: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Scores and reasons together, the checks scored once (what a worker needs)."""
        z = self.check_scores(features)
        worst, scores = z.argmax(axis=1), z.max(axis=1)
        reasons = [
            self.checks[int(j)].name if scores[i] > self.threshold else None
            for i, j in enumerate(worst)
        ]
        return scores, reasons

    def save(self, path: Path) -> Path:
        arrays: dict[str, np.ndarray] = {
            "method": np.array(MULTI_METHOD),
            "layers": np.array(self.spec.layers, dtype=str),
            "statistics": np.array(self.spec.input_statistics, dtype=str),
            "names": np.array([c.name for c in self.checks], dtype=str),
            "kinds": np.array([c.kind for c in self.checks], dtype=str),
            "index": np.array([c.index for c in self.checks], np.int64),
            "centre": np.array([c.centre for c in self.checks], np.float64),
            "threshold": np.array([c.threshold for c in self.checks], np.float64),
            "weights": np.array(
                [c.weights or (0.0,) * len(self.spec.input_statistics) for c in self.checks],
                np.float64,
            ).reshape(len(self.checks), len(self.spec.input_statistics)),
            "quantile": np.array(self.quantile, np.float64),
            "target": np.array(self.target, np.float64),
            "stain_augmented": np.array(self.stain_augmented),
        }
        for i, c in enumerate(self.checks):
            if c.means is not None and c.precision is not None:
                arrays[f"means_{i}"] = c.means
                arrays[f"precision_{i}"] = c.precision
        with Path(path).open("wb") as fh:  # a file handle: savez adds no ".npz" suffix
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> MultiGuard:
        with np.load(Path(path), allow_pickle=False) as z:
            checks = [
                Check(
                    name=str(z["names"][i]),
                    kind=str(z["kinds"][i]),
                    index=int(z["index"][i]),
                    centre=float(z["centre"][i]),
                    threshold=float(z["threshold"][i]),
                    weights=tuple(float(w) for w in z["weights"][i])
                    if str(z["kinds"][i]) == "input"
                    else (),
                    means=z[f"means_{i}"] if f"means_{i}" in z.files else None,
                    precision=z[f"precision_{i}"] if f"precision_{i}" in z.files else None,
                )
                for i in range(len(z["names"]))
            ]
            if "statistics" in z.files:
                statistics = tuple(str(v) for v in z["statistics"])
            else:  # saved before the statistics were named: a flag for the legacy three
                statistics = LEGACY_INPUT_STATISTICS if bool(z["input_statistics"]) else ()
            return cls(
                spec=FeatureSpec(tuple(str(v) for v in z["layers"]), statistics),
                checks=checks,
                quantile=float(z["quantile"]),
                target=float(z["target"]),
                stain_augmented=bool(z["stain_augmented"]),
            )

    def manifest_entry(self, file_hash: str) -> dict:
        return {
            "method": MULTI_METHOD,
            "layer": self.layer,
            "layers": list(self.spec.layers),
            "checks": [c.name for c in self.checks],
            "threshold": self.threshold,
            "quantile": self.quantile,
            "target": self.target,
            "stain_augmented": self.stain_augmented,
            "file": OOD_FILE,
            "sha256": file_hash,
        }


Guard = MahalanobisGuard | MultiGuard


def guard_load(path: Path, method: str) -> Guard:
    """A saved guard of either kind, by the manifest's method."""
    if method == METHOD:
        return MahalanobisGuard.load(path)
    if method == MULTI_METHOD:
        return MultiGuard.load(path)
    raise ValueError(f"unknown out-of-scope method {method!r}")


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
    name: str = ""  # the check's name, as reasons give it (a one-layer guard's "layer X")

    def score(self, features: np.ndarray) -> np.ndarray:
        z = np.asarray(features, np.float64).reshape(len(features), -1) @ self.factor
        d2 = ((z[:, None, :] - self.whitened_means[None, :, :]) ** 2).sum(axis=2)  # (n, k)
        return np.sqrt(d2.min(axis=1))

    def judge(self, features: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Scores, and this check's name for each image it flags (None elsewhere)."""
        scores = self.score(features)
        return scores, [self.name if s > self.threshold else None for s in scores]


#: What a worker's predictor keeps of a guard (``Guard.scorer()``).
Scorer = GuardScorer | MultiGuard


def _whitened(means: np.ndarray, precision: np.ndarray, threshold: float) -> GuardScorer:
    # P = L L^T (a shrunk covariance's inverse is positive definite), so
    # (f - mu)^T P (f - mu) = |(f - mu) L|^2: the class means move into that space once.
    p = np.asarray(precision, np.float64)
    try:
        factor = np.linalg.cholesky(p)
    except np.linalg.LinAlgError:
        # Dead units (all-zero features) on a few images can leave P singular to rounding:
        # the same quadratic form from its eigenvectors, negative rounding clipped to 0.
        w, v = np.linalg.eigh((p + p.T) / 2)
        factor = v * np.sqrt(np.clip(w, 0.0, None))
    return GuardScorer(factor, np.asarray(means, np.float64) @ factor, threshold)
