"""Every architecture builds with the right output; CML-1 has the study's 23 layers."""

import collections

import keras
import numpy as np
import pytest

from training.architectures import (
    ARCHITECTURES,
    WeightsUnavailableError,
    build_model,
    heatmap_layer,
)


def test_cml1_has_the_studys_23_layers():
    """5 Conv, 6 BatchNorm, 5 MaxPool, 1 Flatten, 3 Dense, 1 Dropout = 21, plus the
    InputLayer and the Rescaling layer = 23, counted the way ``model.layers`` counts."""
    model = build_model("cml1", 5, 64)
    kinds = collections.Counter(type(layer).__name__ for layer in model.layers)
    assert kinds == {
        "InputLayer": 1,
        "Rescaling": 1,
        "Conv2D": 5,
        "BatchNormalization": 6,
        "MaxPooling2D": 5,
        "Flatten": 1,
        "Dense": 3,
        "Dropout": 1,
    }
    assert len(model.layers) == 23
    assert all(
        layer.momentum == 0.9
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert model.layers[-1].activation.__name__ == "softmax"


# The deepest backbones take seconds each to build on a CPU: the fast loop skips them.
BIG = {"resnet101", "densenet201", "efficientnetb7"}


@pytest.mark.parametrize(
    "arch",
    [pytest.param(a, marks=pytest.mark.slow) if a in BIG else a for a in sorted(ARCHITECTURES)],
)
def test_every_architecture_builds_with_the_right_output_size(arch):
    model = build_model(arch, 3, 32, weights=None)
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    assert tuple(model.output.shape) == (None, 3)
    probs = np.asarray(model(np.full((2, 32, 32, 3), 128.0, np.float32), training=False))
    assert probs.shape == (2, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert len(model.get_layer(heatmap_layer(model)).output.shape) == 4
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.momentum == 0.9 for layer in bns)


@pytest.mark.parametrize(
    "arch,module",
    [
        ("resnet50", "resnet"),
        pytest.param("densenet201", "densenet", marks=pytest.mark.slow),
        ("mobilenet", "mobilenet"),
    ],
)
def test_built_in_scaling_matches_the_backbones_preprocess_input(arch, module):
    model = build_model(arch, 2, 32)
    first = model.layers[1]
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    assert np.allclose(np.asarray(first(x)), expected, atol=1e-3)


def test_imagenet_weights_give_a_clear_error_when_they_cannot_be_had(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_model("mobilenet", 2, 32, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsUnavailableError):
        build_model("cml1", 2, 32, weights="imagenet")


def test_a_local_weights_file_is_loaded_into_the_backbone(tmp_path):
    source = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=1.0
    )
    path = tmp_path / "mobilenet_notop.weights.h5"
    source.save_weights(path)
    model = build_model("mobilenet", 2, 32, weights=str(path))
    src = source.get_layer("conv1").get_weights()[0]
    assert np.array_equal(model.get_layer("conv1").get_weights()[0], src)


def test_unknown_architecture_and_tiny_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("alexnet", 2, 32)
    with pytest.raises(ValueError, match="at least"):
        build_model("resnet50", 2, 16)
