"""The model-facing core of inference: load a packaged artifact, warm it up, classify a batch.

Plain Python + TensorFlow + numpy, never Django: it takes folders, bytes and arrays and
returns small dataclasses, so workers, benchmarks, notebooks and tests share one path.

Speed (see docs/benchmarks.md): a case's images go through ONE compiled call of the
model (a ``tf.function`` with a fixed input signature whose batch axis is free, so any
batch size reuses the same trace), instead of ``model.predict`` per image, which pays
70-140 ms of overhead per call on a CPU.

Out-of-scope guard (format-2 artifacts): the same call also returns the penultimate-layer
features (a two-output model), and the artifact's Mahalanobis guard scores them; an image
scored above the guard's threshold is ``out_of_scope``. Format-1 artifacts have no guard:
``ood_score`` stays None and nothing is flagged.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import tensorflow as tf

from runtime.artifact import ArtifactError, Manifest, load_guard, load_packaged
from runtime.calibration import apply_temperature
from runtime.guard import MahalanobisGuard, two_output_model
from runtime.heatmaps import GradCam
from runtime.preprocess import ImageDecodeError, load_for_model

__all__ = ["ImagePrediction", "Predictor", "cached_predictor"]

# Larger cases are split into chunks of this many images: bounds memory for big models
# while keeping the per-call overhead negligible.
MAX_BATCH = 32
# Deployed, shadow, and the one being replaced during a hot swap.
CACHE_SIZE = 3


@dataclass(frozen=True)
class ImagePrediction:
    """One image's calibrated answer."""

    probabilities: dict[str, float]
    label: str
    confidence: float
    ood_score: float | None = None  # distance to the training data; None without a guard
    out_of_scope: bool = False  # ood_score above the guard's threshold


class Predictor:
    """A loaded, warmed-up model and the manifest facts needed to read its output."""

    def __init__(self, model, manifest: Manifest, guard: MahalanobisGuard | None = None) -> None:
        self.model = model
        self.manifest = manifest
        self.guard = guard
        # With a guard, one call returns (features, probabilities); without, probabilities.
        self._net = two_output_model(model, guard.layer) if guard is not None else model
        self.classes: tuple[str, ...] = tuple(manifest.classes)
        self.input_size = int(manifest.input_size)
        self.temperature = float(manifest.temperature or 1.0)
        self.confidence_threshold = float(manifest.confidence_threshold)
        self.content_hash: str = manifest.content_hash
        self._gradcam: GradCam | None = None
        size = self.input_size
        # A fixed signature with a free batch axis: one trace serves every batch size.
        self._forward = tf.function(
            self._probabilities,
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)],
        )

    def _probabilities(self, images):
        return self._net(tf.cast(images, tf.float32), training=False)

    @classmethod
    def load(cls, folder: Path | str, *, expected_hash: str | None = None) -> Predictor:
        """Load an artifact folder (its hash is verified), self-test it and warm it up.

        ``expected_hash`` is the registry's record: a folder whose manifest names another
        content hash is refused, so a worker never serves other weights than were imported.
        """
        # The compiled self-test below replaces load_packaged's eager one and warms up too.
        model, manifest = load_packaged(Path(folder), check_inference=False)
        if expected_hash is not None and manifest.content_hash != expected_hash:
            raise ArtifactError(
                f"artifact content hash {manifest.content_hash} does not match the registry's "
                f"{expected_hash}"
            )
        predictor = cls(model, manifest, load_guard(Path(folder), manifest))
        predictor.self_test()
        return predictor

    def self_test(self) -> None:
        """Run one test image: proves the model answers with one probability per class.

        It is also the warm-up: the first call traces the graph and builds the kernels, so
        the first real case does not pay for it.
        """
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (1, self.input_size, self.input_size, 3), dtype=np.uint8)
        try:
            out = self._split(self._forward(tf.constant(image)))[0]
        except (ValueError, TypeError, tf.errors.OpError) as exc:
            raise ArtifactError(
                f"the model cannot classify a {self.input_size}x{self.input_size} RGB image: {exc}"
            ) from exc
        if out.shape != (1, len(self.classes)):
            raise ArtifactError(
                f"the model outputs shape {tuple(out.shape)[1:]} for one image, but the manifest "
                f"lists {len(self.classes)} classes"
            )
        if not np.all(np.isfinite(out)) or abs(float(out.sum()) - 1.0) > 1e-3:
            raise ArtifactError("the model's output is not a probability distribution")

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode image bytes and resize them for this model; raises ImageDecodeError."""
        return load_for_model(data, self.input_size)

    def _split(self, out) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, out-of-scope scores or None) from one compiled call's output."""
        if self.guard is None:
            return np.asarray(out), None
        features, probs = out
        return np.asarray(probs), self.guard.score(np.asarray(features))

    def scored(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw softmax and out-of-scope scores (None without a guard) for a uint8 batch."""
        parts = [
            self._split(self._forward(tf.constant(images[i : i + MAX_BATCH])))
            for i in range(0, len(images), MAX_BATCH)
        ]
        if not parts:
            return np.zeros((0, len(self.classes))), None
        probs = np.concatenate([p for p, _ in parts])
        scores = None if self.guard is None else np.concatenate([s for _, s in parts])
        return probs, scores

    def prepare_many(self, blobs: Sequence[bytes]) -> list[np.ndarray | ImageDecodeError]:
        """Prepare a case's images together: Pillow releases the GIL while it decodes and
        resizes, so threads spread that work over the cores. A bad image yields its error."""

        def one(data: bytes) -> np.ndarray | ImageDecodeError:
            try:
                return self.prepare(data)
            except ImageDecodeError as exc:
                return exc

        return list(_decode_pool().map(one, blobs))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Raw (uncalibrated) softmax for a uint8 (N, size, size, 3) batch: the compiled call."""
        return self.scored(images)[0]

    def heatmaps(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Grad-CAM maps (N, size, size) in [0, 1] on the manifest's heatmap layer."""
        if self._gradcam is None:
            self._gradcam = GradCam(self.model, self.manifest.heatmap_layer)
        batch = np.stack(images)
        return np.concatenate(
            [self._gradcam(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)]
        )

    def predict(self, images: Sequence[np.ndarray]) -> tuple[list[ImagePrediction], float]:
        """Classify prepared images as one batch; return calibrated answers and milliseconds."""
        if not images:
            return [], 0.0
        started = time.perf_counter()
        raw, scores = self.scored(np.stack(images))
        probs = apply_temperature(raw, self.temperature)
        elapsed_ms = (time.perf_counter() - started) * 1000
        # scored() returns scores only when there is a guard, so a score has a threshold.
        threshold = None if self.guard is None else self.guard.threshold
        answers = []
        for i, row in enumerate(probs):
            best = int(row.argmax())
            score = None if scores is None else float(scores[i])
            answers.append(
                ImagePrediction(
                    probabilities={c: float(p) for c, p in zip(self.classes, row, strict=True)},
                    label=self.classes[best],
                    confidence=float(row[best]),
                    ood_score=score,
                    out_of_scope=score is not None and threshold is not None and score > threshold,
                )
            )
        return answers, elapsed_ms


@cache
def _decode_pool() -> ThreadPoolExecutor:
    # Made on first use, inside the process that uses it: threads do not survive a fork.
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="decode")


_cache: OrderedDict[str, Predictor] = OrderedDict()
_cache_lock = threading.Lock()


def cached_predictor(content_hash: str, fetch: Callable[[], Path]) -> Predictor:
    """This process's Predictor for an artifact, loaded (via ``fetch``) on first use.

    Keyed by content hash, so a newly deployed version is loaded and warmed up by the
    first task that needs it, while the others stay cached for the shadow model and for
    tasks still finishing with the previous version.
    """
    with _cache_lock:
        predictor = _cache.get(content_hash)
        if predictor is not None:
            _cache.move_to_end(content_hash)
            return predictor
        predictor = Predictor.load(fetch(), expected_hash=content_hash)
        _cache[content_hash] = predictor
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return predictor
