"""Tiny packaged models (32 px, a few filters) and generated images, without Django.

The artifacts are written by the runtime's own ``write_artifact``, the function training
packages with, so these tests exercise the same format that ``python -m training``
produces. The ``artifacts`` fixture built from them lives in ``tests/conftest.py``, where
the runtime and the inference tests both see it.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["healthy", "ALL", "AML", "CLL", "CML"]
SIZE = 32


def tiny_model(seed: int, n_classes: int = len(CLASSES)):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def manifest_fields(**overrides) -> dict:
    """A tiny artifact's manifest, as the training pipeline would write it."""
    return {
        "name": "tiny",
        "version": "v1",
        "architecture": "tiny-cnn",
        "classes": CLASSES,
        "input_size": SIZE,
        "dataset_fingerprint": "sha256:test",
        "split_sizes": {"train": 1, "validation": 1, "test": 1},
        "metrics": {"accuracy": 0.2, "macro_f1": 0.2, "ece_before": 0.1, "ece_after": 0.05},
        "temperature": 1.5,
        "confidence_threshold": 0.6,
        "heatmap_layer": "conv",
        "synthetic": True,
        **overrides,
    }


def package(out: Path, *, version: str, seed: int, **overrides) -> Path:
    from runtime.artifact import write_artifact

    fields = manifest_fields(version=version, **overrides)
    model = tiny_model(seed, n_classes=len(fields["classes"]))
    folder, _ = write_artifact(model, out, manifest_fields=fields)
    return folder


def png_bytes(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
