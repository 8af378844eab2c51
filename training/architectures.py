"""The study's seven architectures, each taking 0-255 RGB and returning softmax probabilities.

Every model starts with an ``image`` input of raw 0-255 RGB values (uint8 or float) and
does its own scaling inside, so the packaged file needs nothing but ``resize_for_model``
in front of it. The six ``keras.applications`` backbones are built flat (their layers
are the model's layers) so Grad-CAM can reach the last convolutional block by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

log = logging.getLogger(__name__)

BN_MOMENTUM = 0.9  # see ML-NOTES: Keras' 0.99 left validation at 20-50 % with augmentation

# ImageNet statistics used by the backbones' own preprocess_input functions.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    default_size: int
    preprocessing: str  # rescale | tf | torch | caffe | none (the backbone scales itself)
    app: str | None  # keras.applications constructor name, None for CML-1
    min_size: int = 32


ARCHITECTURES: dict[str, ArchSpec] = {
    "cml1": ArchSpec("cml1", 224, "rescale", None),
    "resnet50": ArchSpec("resnet50", 224, "caffe", "ResNet50"),
    "resnet101": ArchSpec("resnet101", 224, "caffe", "ResNet101"),
    "densenet201": ArchSpec("densenet201", 224, "torch", "DenseNet201"),
    "vgg19": ArchSpec("vgg19", 224, "caffe", "VGG19"),
    "efficientnetb7": ArchSpec("efficientnetb7", 600, "none", "EfficientNetB7"),
    "mobilenet": ArchSpec("mobilenet", 224, "tf", "MobileNet"),
}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be downloaded or read."""


def _input(size: int) -> keras.KerasTensor:
    return keras.Input(shape=(size, size, 3), name="image", dtype="float32")


def _preprocessing(x, mode: str):
    """Scaling that matches the backbone's ``preprocess_input``, as ordinary saved layers."""
    if mode == "rescale":
        return layers.Rescaling(1.0 / 255, name="rescale")(x)
    if mode == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    if mode == "torch":
        scale = [1.0 / (255 * s) for s in _TORCH_STD]
        offset = [-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD, strict=True)]
        return layers.Rescaling(scale, offset=offset, name="rescale")(x)
    if mode == "caffe":
        # RGB -> BGR and mean subtraction as a frozen 1x1 convolution: a plain layer,
        # so the saved model loads without custom code.
        conv = layers.Conv2D(3, 1, name="rgb_to_bgr_minus_mean", trainable=False)
        y = conv(x)
        perm = np.zeros((1, 1, 3, 3), np.float32)
        perm[0, 0, 2, 0] = perm[0, 0, 1, 1] = perm[0, 0, 0, 2] = 1.0
        conv.set_weights([perm, -np.asarray(_CAFFE_MEAN_BGR, np.float32)])
        return y
    if mode == "none":
        return x
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def build_cml1(
    n_classes: int, size: int = 224, dropout: float = 0.5, normalizer: keras.Layer | None = None
) -> keras.Model:
    """CML-1: 5 Conv2D, 6 BatchNorm, 5 MaxPool, 1 Flatten, 3 Dense, 1 Dropout.

    That is 21 computing layers. The study's "23 layers in all" counts the way Keras'
    ``model.layers`` does here: the InputLayer and the Rescaling layer (x / 255) that
    feeds the first convolution are layers too, so ``len(model.layers) == 23``.
    Each conv block is Conv(3x3, ReLU) -> BatchNorm -> MaxPool(2); the head is
    Flatten -> Dense(256, ReLU) -> BatchNorm -> Dropout -> Dense(128, ReLU) -> Dense(softmax).
    """
    inputs = _input(size)
    x = _preprocessing(normalizer(inputs) if normalizer else inputs, "rescale")
    for i, filters in enumerate((16, 32, 64, 128, 256), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense1")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn6")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(128, activation="relu", name="dense2")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cml1")


def _backbone(spec: ArchSpec, x, size: int, weights: str | None) -> keras.Model:
    """The keras.applications backbone (no top) built on tensor ``x``, weights loaded."""
    assert spec.app is not None  # build_model sends CML-1, the one spec without one, elsewhere
    ctor = getattr(keras.applications, spec.app)
    model = ctor(include_top=False, weights=None, input_tensor=x, input_shape=(size, size, 3))
    if weights is None:
        return model
    source = weights if weights != "imagenet" else "imagenet"
    if source != "imagenet" and not Path(source).is_file():
        raise WeightsUnavailableError(f"weights file {source} does not exist")
    try:
        reference = ctor(include_top=False, weights=source, input_shape=(size, size, 3))
    except Exception as exc:  # keras raises several types for download and file errors
        raise WeightsUnavailableError(
            f"could not load {spec.app} ImageNet weights ({type(exc).__name__}: {exc}). "
            "This machine may have no internet access: download the 'notop' weights file "
            "for this architecture elsewhere (keras.applications caches it in "
            "~/.keras/models/) and pass --weights /path/to/file.h5, or train from scratch "
            "with --weights none."
        ) from exc
    src = [layer for layer in reference.layers if layer.weights]
    dst = [layer for layer in model.layers if layer.weights and layer.name in {r.name for r in src}]
    if len(src) != len(dst):
        raise WeightsUnavailableError(
            f"{spec.app}: pretrained layers do not line up ({len(src)} vs {len(dst)})"
        )
    for s, d in zip(src, dst, strict=True):
        d.set_weights(s.get_weights())
    return model


def build_model(
    arch: str,
    n_classes: int,
    size: int | None = None,
    weights: str | None = None,
    dropout: float = 0.3,
    normalizer: keras.Layer | None = None,
) -> keras.Model:
    """Build ``arch`` for ``n_classes`` at ``size`` px; weights: None, 'imagenet' or a file.

    ``normalizer`` (0-255 RGB in and out, e.g. stain normalisation) runs first, inside the
    model, so the packaged file applies it at inference too.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    size = size or spec.default_size
    if size < spec.min_size:
        raise ValueError(f"{arch} needs an input of at least {spec.min_size} px, got {size}")
    if n_classes < 2:
        raise ValueError("need at least two classes")
    if spec.app is None:
        if weights is not None:
            raise WeightsUnavailableError("cml1 has no pretrained weights: use --weights none")
        return build_cml1(n_classes, size, normalizer=normalizer)
    inputs = _input(size)
    x = _preprocessing(normalizer(inputs) if normalizer else inputs, spec.preprocessing)
    backbone = _backbone(spec, x, size, weights)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    y = layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
    y = layers.Dropout(dropout, name="head_dropout")(y)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(y)
    return keras.Model(inputs, outputs, name=arch)


def backbone_layers(model: keras.Model) -> list[keras.Layer]:
    """Layers a freeze-then-fine-tune schedule freezes: everything before the new head."""
    head = {"head_pool", "head_dropout", "probabilities"}
    return [
        layer
        for layer in model.layers
        if layer.name not in head
        and not isinstance(layer, keras.layers.InputLayer)
        and layer.name not in ("rgb_to_bgr_minus_mean", "stain_normalize")
    ]


def heatmap_layer(model: keras.Model) -> str:
    """Name of the last layer with a spatial (rank-4) output that is not pooling: Grad-CAM's."""
    skip = (layers.MaxPooling2D, layers.AveragePooling2D, layers.Dropout, layers.ZeroPadding2D)
    name = None
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, *skip)):
            continue
        shape = getattr(layer.output, "shape", None)
        if (
            shape is not None
            and len(shape) == 4
            and layer.name not in ("rescale", "rgb_to_bgr_minus_mean", "stain_normalize")
        ):
            name = layer.name
    if name is None:
        raise ValueError(f"{model.name} has no spatial layer for Grad-CAM")
    return name
