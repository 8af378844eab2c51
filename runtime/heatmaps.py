"""Grad-CAM: where in a smear the model looked for its answer. Plain TensorFlow + numpy.

Never imports Django. Gradients need the Keras model, so heatmaps are made by a worker
of their own (the analysis workers serve the ONNX graph, without TensorFlow):
``cached_heatmap_model`` loads an artifact's Keras model once per process, and the
worker stores the PNG that ``overlay_png`` returns with the prediction.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from runtime.artifact import ArtifactError, Manifest, load_packaged, verification_load
from runtime.export import PROBABILITY_TOLERANCE, keras_outputs

__all__ = ["GradCam", "HeatmapModel", "cached_heatmap_model", "gradcam", "overlay_png"]

# Share of the colour map in the hottest pixels; cold ones show the smear unchanged.
OVERLAY_STRENGTH = 0.55
# Images per Grad-CAM call: bounds the memory of the gradients of big models.
MAX_BATCH = 32
# The deployed model, and the one being replaced during a hot swap.
CACHE_SIZE = 2


class GradCam:
    """Grad-CAM for one model and layer, compiled once: eager gradients of deep models
    cost seconds per image on a CPU, a traced function a fraction of that."""

    def __init__(self, model: keras.Model, layer_name: str) -> None:
        layer = model.get_layer(layer_name)
        self._probe = keras.Model(model.inputs, [layer.output, model.outputs[0]])
        size = model.inputs[0].shape[1:3]
        self._maps = tf.function(
            self._compute,
            input_signature=[
                tf.TensorSpec([None, *size, 3], tf.uint8),
                tf.TensorSpec([None], tf.int32),
            ],
        )

    def _compute(self, images, class_indices):
        x = tf.cast(images, tf.float32)
        with tf.GradientTape() as tape:
            features, probabilities = self._probe(x, training=False)
            log_p = tf.math.log(tf.maximum(probabilities, 1e-30))
            top = tf.cast(tf.argmax(probabilities, axis=1), tf.int32)
            chosen_class = tf.where(class_indices < 0, top, class_indices)
            chosen = tf.gather(log_p, chosen_class, axis=1, batch_dims=1)
            score = chosen - tf.reduce_mean(log_p, axis=1)
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
        return tf.image.resize(cams[..., None], tf.shape(images)[1:3], method="bilinear")[..., 0]

    def __call__(
        self, images_uint8_batch: np.ndarray, class_indices: np.ndarray | None = None
    ) -> np.ndarray:
        """Maps (N, H, W) in [0, 1] at the model's input size; the top class unless given.

        The score differentiated is log p(class) minus the mean log-probability: the logit
        up to a constant the softmax ignores. Differentiating the probability itself would
        give near-zero gradients, and a blank map, wherever the model is confident.
        """
        images = np.asarray(images_uint8_batch)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected a (N, H, W, 3) batch, got {images.shape}")
        if class_indices is None:
            class_indices = np.full(len(images), -1)
        cams = self._maps(
            tf.constant(images.astype(np.uint8)), tf.constant(class_indices, dtype=tf.int32)
        ).numpy()
        peaks = cams.reshape(len(cams), -1).max(axis=1)
        # A map with no positive evidence stays all zero rather than being blown up from noise.
        scale = np.where(peaks > 1e-12, peaks, 1.0)[:, None, None]
        return np.clip(cams / scale, 0.0, 1.0).astype(np.float32)


class HeatmapModel:
    """An artifact's Keras model, checked against its verification batch, with Grad-CAM."""

    def __init__(self, model: keras.Model, manifest: Manifest) -> None:
        self.model = model
        self.manifest = manifest
        self.input_size = int(manifest.input_size)
        self._gradcam = GradCam(model, manifest.heatmap_layer)

    @classmethod
    def load(cls, folder: Path | str, *, expected_hash: str | None = None) -> HeatmapModel:
        """Load and verify the Keras model: its hash, and (format 3) that it still answers
        the verification batch as recorded, so a heatmap explains the served answer."""
        model, manifest = load_packaged(Path(folder), check_inference=False)
        if expected_hash is not None and manifest.content_hash != expected_hash:
            raise ArtifactError(
                f"artifact content hash {manifest.content_hash} does not match the registry's "
                f"{expected_hash}"
            )
        if manifest.onnx is not None:
            images, expected = verification_load(Path(folder), manifest)
            got = keras_outputs(model, images[:4], None).probabilities
            if np.abs(got - expected.probabilities[: len(got)]).max() > PROBABILITY_TOLERANCE:
                raise ArtifactError(
                    f"{folder}: the Keras model no longer answers its verification images as "
                    "recorded at packaging; the artifact was changed"
                )
        return cls(model, manifest)

    def maps(self, images: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
        """Grad-CAM maps (N, size, size) in [0, 1] for prepared uint8 images, each for the
        label the served model gave it (the int8 variant may differ from Keras' top class)."""
        batch = np.stack(images)
        classes = list(self.manifest.classes)
        indices = np.array([classes.index(label) for label in labels], dtype=np.int32)
        return np.concatenate(
            [
                self._gradcam(batch[i : i + MAX_BATCH], indices[i : i + MAX_BATCH])
                for i in range(0, len(batch), MAX_BATCH)
            ]
        )


_cache: OrderedDict[str, HeatmapModel] = OrderedDict()
_cache_lock = threading.Lock()


def cached_heatmap_model(content_hash: str, fetch: Callable[[], Path]) -> HeatmapModel:
    """This process's HeatmapModel for an artifact, loaded (via ``fetch``) on first use."""
    with _cache_lock:
        found = _cache.get(content_hash)
        if found is not None:
            _cache.move_to_end(content_hash)
            return found
        loaded = HeatmapModel.load(fetch(), expected_hash=content_hash)
        _cache[content_hash] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return loaded


def gradcam(
    model: keras.Model,
    images_uint8_batch: np.ndarray,
    layer_name: str,
    class_indices: np.ndarray | None = None,
) -> np.ndarray:
    """One-off Grad-CAM maps (N, H, W) in [0, 1]; see GradCam for repeated use."""
    return GradCam(model, layer_name)(images_uint8_batch, class_indices)


def _colour_map(heat: np.ndarray) -> np.ndarray:
    """A jet-like map (blue, cyan, yellow, red) as float RGB in [0, 1]; no matplotlib needed."""
    h = heat[..., None]
    red = np.clip(1.5 - np.abs(4 * h - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * h - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * h - 1), 0, 1)
    return np.concatenate([red, green, blue], axis=-1)


def overlay_png(image_uint8: np.ndarray, heatmap: np.ndarray) -> bytes:
    """The smear at its ORIGINAL size with the heatmap resized onto it, colour-mapped, as PNG.

    The blend follows the heat, so the review page can lay the PNG exactly over the image.
    """
    image = np.asarray(image_uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.shape} {image.dtype}")
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got {heat.shape}")
    height, width = image.shape[:2]
    resized = Image.fromarray(heat).resize((width, height), Image.Resampling.BILINEAR)
    heat = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    alpha = (OVERLAY_STRENGTH * heat)[..., None]
    blended = (1 - alpha) * (image.astype(np.float32) / 255.0) + alpha * _colour_map(heat)
    out = Image.fromarray(np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    # zlib's fastest level: `optimize=True` (level 9 and a search over filters) took 1.2 s
    # for one 640x480 smear's overlay, ten times everything else the heatmap worker does
    # for it; level 1 takes 0.1 s for a file 14 % bigger (docs/benchmarks.md, load).
    out.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
