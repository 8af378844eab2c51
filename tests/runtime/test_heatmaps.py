"""Grad-CAM on a real, briefly trained tiny model: no mocks, no Django."""

import io

import keras
import numpy as np
import pytest
from PIL import Image

from runtime.heatmaps import gradcam, overlay_png

COLOURS = ((250, 60, 60), (60, 60, 250))


def _blob_images(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Dark noisy fields with one bright blob anywhere: class 0 when it is red, 1 when blue.

    Both classes have evidence in one place, so both classes' maps should light it up.
    """
    images = rng.integers(0, 40, (n, 32, 32, 3)).astype(np.uint8)
    labels = rng.integers(0, 2, n)
    yy, xx = np.mgrid[:32, :32]
    for image, label in zip(images, labels, strict=True):
        cx, cy = rng.integers(5, 27, 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 12] = COLOURS[label]
    return images, labels


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    # Global pooling like the real architectures' heads (Grad-CAM's intended setting).
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    images, labels = _blob_images(256, np.random.default_rng(0))
    history = model.fit(images, labels, epochs=4, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    return model


def test_the_heatmap_has_the_model_input_size_and_is_not_constant(tiny_model):
    images, _ = _blob_images(3, np.random.default_rng(1))
    maps = gradcam(tiny_model, images, "last_conv")
    assert maps.shape == (3, 32, 32)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for image, heat in zip(images, maps, strict=True):
        assert heat.std() > 0.01
        # The model looked at the blob more than at the background.
        blob = image.max(axis=-1) > 200
        assert heat[blob].mean() > heat[~blob].mean()


def test_the_overlay_has_the_original_images_size(tiny_model):
    rng = np.random.default_rng(2)
    original = rng.integers(0, 255, (75, 120, 3)).astype(np.uint8)
    small = np.asarray(Image.fromarray(original).resize((32, 32)))
    heat = gradcam(tiny_model, small[None], "last_conv")[0]
    png = overlay_png(original, heat)
    with Image.open(io.BytesIO(png)) as overlay:
        assert overlay.format == "PNG"
        assert overlay.size == (120, 75)
        pixels = np.asarray(overlay.convert("RGB"))
    assert not np.array_equal(pixels, original)


def test_overlay_refuses_what_is_not_an_rgb_image():
    with pytest.raises(ValueError, match="RGB"):
        overlay_png(np.zeros((4, 4), np.uint8), np.zeros((2, 2)))
