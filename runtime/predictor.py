"""The model-facing core of inference: load a packaged artifact, warm it up, classify a batch.

Plain Python + ONNX Runtime + numpy, never Django and never TensorFlow: it serves the
artifact's verified ONNX graph (``runtime.export``), which is about twice as fast as
TensorFlow on these CPUs, and leaves ~550 MB and seconds of start-up out of every
analysis worker. It takes folders, bytes and arrays and returns small dataclasses, so
workers, benchmarks, notebooks and tests share one path. Grad-CAM needs gradients, so it
runs on the Keras model elsewhere (``runtime.heatmaps``, a worker of its own).

Speed (see docs/benchmarks.md): a case's images go through one ONNX Runtime session in
small batches (:func:`run_batch`), run side by side, one per core, on a session that
computes each run on one thread.

Out-of-scope guard (format-2 artifacts and later): the same call also returns the
penultimate-layer features (the graph's second output), and the artifact's Mahalanobis
guard scores them; an image scored above the guard's threshold is ``out_of_scope``, and
``ood_reason`` names the check that scored it highest (``"blank"``, ``"layer bn4"``).
Format-1 artifacts have no guard: ``ood_score`` stays None and nothing is flagged.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np

from runtime.artifact import (
    ArtifactError,
    Manifest,
    load_guard,
    onnx_file,
    read_manifest,
    sha256_file,
    verification_load,
)
from runtime.calibration import apply_temperature
from runtime.export import (
    KerasOutputs,
    freed_memory_release,
    onnx_outputs,
    onnx_session,
    outputs_compare,
)
from runtime.guard import Guard, Scorer
from runtime.preprocess import ImageDecodeError, load_for_model

__all__ = ["ImagePrediction", "Predictor", "cached_predictor"]

# Pixels per ONNX Runtime call: one 224 px image, several smaller ones. ORT's work per
# image is the same from 1 to 16 images a call on one thread (ResNet-50, MobileNet and
# CML-1 here), but its arena stays reserved at the largest batch run: ResNet-50 at 16
# images holds ~270 MB more, at 2 ~34 MB; a worker with ResNet-50 and its guard stays
# under 350 MB (docs/benchmarks.md) with two runs of one image in flight. Small inputs
# go several to a call, so that ORT's fixed cost per call (tens of microseconds) stays
# small beside the work (the demo model at 64 px: a few hundred microseconds an image).
RUN_PIXELS = 224 * 224
# Threads per ONNX Runtime run. A case's runs go side by side on a thread per core
# instead (ORT releases the GIL): a model's layers split over two cores less well than
# two images do (here CML-1's graph ran 1.5x faster on two threads than on one, two runs
# side by side 1.9x: docs/benchmarks.md), no ORT thread spins idle between layers, and a
# core that another process takes holds up one image, not every layer's barrier.
SESSION_THREADS = 1
# Deployed, shadow, and the one being replaced during a hot swap.
CACHE_SIZE = 3
# Verification images the self-test on load runs (the import ran them all).
SELF_TEST_IMAGES = 4


@dataclass(frozen=True)
class ImagePrediction:
    """One image's calibrated answer."""

    probabilities: dict[str, float]
    label: str
    confidence: float
    ood_score: float | None = None  # distance to the training data; None without a guard
    out_of_scope: bool = False  # ood_score above the guard's threshold
    ood_reason: str = ""  # out of scope: the guard's check that scored it highest


class Predictor:
    """A loaded, warmed-up ONNX graph and the manifest facts needed to read its output."""

    def __init__(
        self,
        session,
        manifest: Manifest,
        guard: Guard | None = None,
        *,
        variant: str = "fp32",
    ) -> None:
        self.session = session
        self.manifest = manifest
        # Only what scoring needs: the guard's precision matrix is not kept beside its factor.
        self.guard: Scorer | None = None if guard is None else guard.scorer()
        self.variant = variant
        self.classes: tuple[str, ...] = tuple(manifest.classes)
        self.input_size = int(manifest.input_size)
        self.temperature = float(manifest.temperature or 1.0)
        self.confidence_threshold = float(manifest.confidence_threshold)
        self.content_hash: str = manifest.content_hash
        self.run_batch = run_batch(self.input_size)

    @classmethod
    def load(
        cls,
        folder: Path | str,
        *,
        expected_hash: str | None = None,
        variant: str = "fp32",
    ) -> Predictor:
        """Load an artifact folder's ONNX graph (its hashes are verified), self-test it
        and warm it up.

        ``expected_hash`` is the registry's record: a folder whose manifest names another
        content hash is refused, so a worker never serves other weights than were imported.
        ``variant`` picks the fp32 graph or the quantised int8 one.
        """
        folder = Path(folder)
        if folder.is_file():
            folder = folder.parent
        manifest = read_manifest(folder)
        if expected_hash is not None and manifest.content_hash != expected_hash:
            raise ArtifactError(
                f"artifact content hash {manifest.content_hash} does not match the registry's "
                f"{expected_hash}"
            )
        if manifest.ood is not None:
            ood_path = folder / manifest.ood["file"]
            if not ood_path.is_file() or sha256_file(ood_path) != manifest.ood["sha256"]:
                raise ArtifactError(
                    f"{ood_path}: out-of-scope guard missing or its hash does not match the "
                    "manifest's; the file was changed or corrupted"
                )
        session = onnx_session(onnx_file(folder, manifest, variant), threads=SESSION_THREADS)
        predictor = cls(session, manifest, load_guard(folder, manifest), variant=variant)
        predictor.self_test(folder)
        freed_memory_release()
        return predictor

    def self_test(self, folder: Path) -> None:
        """Run the first verification images: proves the graph answers with one probability
        per class and, for fp32, exactly what the Keras model answered at packaging.

        It is also the warm-up: the first run allocates the session's buffers, so the
        first real case does not pay for it.
        """
        images, expected = verification_load(folder, self.manifest)
        images = images[:SELF_TEST_IMAGES]
        try:
            got = onnx_outputs(self.session, images)
        except Exception as exc:  # ORT raises its own types for a graph that cannot run
            raise ArtifactError(
                f"the model cannot classify a {self.input_size}x{self.input_size} RGB image: {exc}"
            ) from exc
        if self.variant == "fp32":
            features = None if expected.features is None else expected.features[: len(images)]
            outputs_compare(got, KerasOutputs(expected.probabilities[: len(images)], features))
        out = got.probabilities
        if out.shape != (len(images), len(self.classes)):
            raise ArtifactError(
                f"the model outputs shape {tuple(out.shape)[1:]} for one image, but the manifest "
                f"lists {len(self.classes)} classes"
            )
        if not np.all(np.isfinite(out)) or np.abs(out.sum(axis=1) - 1.0).max() > 1e-3:
            raise ArtifactError("the model's output is not a probability distribution")

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode image bytes and resize them for this model; raises ImageDecodeError."""
        return load_for_model(data, self.input_size)

    def scored(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw softmax and out-of-scope scores (None without a guard) for a uint8 batch."""
        probs, scores, _ = self.judged(images)
        return probs, scores

    def judged(
        self, images: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, list[str | None] | None]:
        """Raw softmax, out-of-scope scores and, per image, the check that flagged it
        (None where none did; scores and reasons None without a guard). The batch's ORT
        runs go side by side on the cores."""
        size = self.run_batch
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        if len(chunks) > 1:
            parts = list(_pool().map(partial(onnx_outputs, self.session), chunks))
        else:
            parts = [onnx_outputs(self.session, c) for c in chunks]
        if not parts:
            return np.zeros((0, len(self.classes))), None, None
        probs = np.concatenate([p.probabilities for p in parts])
        if self.guard is None:
            return probs, None, None
        features = np.concatenate([p.features for p in parts if p.features is not None])
        scores, reasons = self.guard.judge(features)
        return probs, scores, reasons

    def prepare_many(self, blobs: Sequence[bytes]) -> list[np.ndarray | ImageDecodeError]:
        """Prepare a case's images together: Pillow releases the GIL while it decodes and
        resizes, so threads spread that work over the cores. A bad image yields its error."""

        def one(data: bytes) -> np.ndarray | ImageDecodeError:
            try:
                return self.prepare(data)
            except ImageDecodeError as exc:
                return exc

        return list(_pool().map(one, blobs))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Raw (uncalibrated) softmax for a uint8 (N, size, size, 3) batch."""
        return self.scored(images)[0]

    def predict(self, images: Sequence[np.ndarray]) -> tuple[list[ImagePrediction], float]:
        """Classify prepared images as one batch; return calibrated answers and milliseconds."""
        if not images:
            return [], 0.0
        started = time.perf_counter()
        raw, scores, reasons = self.judged(np.stack(images))
        probs = apply_temperature(raw, self.temperature)
        elapsed_ms = (time.perf_counter() - started) * 1000
        answers = []
        for i, row in enumerate(probs):
            best = int(row.argmax())
            # The guard names a check exactly for the images its threshold flags.
            reason = None if reasons is None else reasons[i]
            answers.append(
                ImagePrediction(
                    probabilities={c: float(p) for c, p in zip(self.classes, row, strict=True)},
                    label=self.classes[best],
                    confidence=float(row[best]),
                    ood_score=None if scores is None else float(scores[i]),
                    out_of_scope=reason is not None,
                    ood_reason=reason or "",
                )
            )
        return answers, elapsed_ms


def run_batch(input_size: int) -> int:
    """Images per ONNX Runtime run for a model of this input size (see RUN_PIXELS)."""
    return max(1, RUN_PIXELS // (input_size * input_size))


@cache
def _pool() -> ThreadPoolExecutor:
    """A thread per core for a case's decoding and its ORT runs, which release the GIL.
    Nothing run on it waits for it in turn, so it cannot deadlock."""
    # Made on first use, inside the process that uses it: threads do not survive a fork.
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="predict")


_cache: OrderedDict[str, Predictor] = OrderedDict()
_cache_lock = threading.Lock()


def cached_predictor(
    content_hash: str, fetch: Callable[[], Path], *, variant: str = "fp32"
) -> Predictor:
    """This process's Predictor for an artifact's variant, loaded (via ``fetch``) on first use.

    Keyed by content hash and variant, so a newly deployed version (or a newly chosen
    variant) is loaded and warmed up by the first task that needs it, while the others
    stay cached for the shadow model and for tasks still finishing with the previous one.
    """
    key = f"{content_hash}:{variant}"
    with _cache_lock:
        predictor = _cache.get(key)
        if predictor is not None:
            _cache.move_to_end(key)
            return predictor
        predictor = Predictor.load(fetch(), expected_hash=content_hash, variant=variant)
        _cache[key] = predictor
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return predictor
