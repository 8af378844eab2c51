"""The study's augmentations, on the fly in tf.data, for the training split only.

The study used imgaug's classic pipeline; these are the same operations and ranges:

- horizontal flip, p 0.5
- Gaussian blur, sigma U(0, 0.5), on half of the images
- linear contrast, alpha U(0.75, 1.5), around mid-grey 127.5
- additive Gaussian noise, scale U(0, 0.05 * 255); per channel for half the images
- multiply by U(0.8, 1.2); per channel for 20 % of the images
- affine: scale U(0.8, 1.2) per axis, translate U(-20 %, 20 %) per axis, rotate U(-25, 25)
  degrees, shear U(-8, 8) degrees, bilinear, constant black fill (imgaug's defaults)

Differences from imgaug, on purpose: the order is fixed (imgaug's example shuffled it)
and every op returns uint8 clipped to 0-255, so each step is a valid image. Randomness
is stateless and seeded per image, so a run is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from training.stain import StainAugmentConfig


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every augmentation (defaults: the study's)."""

    flip_p: float = 0.5
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.0, 0.5)
    contrast: tuple[float, float] = (0.75, 1.5)
    noise_scale: tuple[float, float] = (0.0, 0.05 * 255)
    noise_per_channel_p: float = 0.5
    multiply: tuple[float, float] = (0.8, 1.2)
    multiply_per_channel_p: float = 0.2
    scale: tuple[float, float] = (0.8, 1.2)
    translate: tuple[float, float] = (-0.2, 0.2)
    rotate: tuple[float, float] = (-25.0, 25.0)
    shear: tuple[float, float] = (-8.0, 8.0)
    fill_value: float = 0.0


STUDY = AugmentConfig()
_BLUR_RADIUS = 2  # kernel 5 wide: covers 4 sigma at sigma 0.5


def _seed(seed, k: int):
    """Derive the k-th independent stateless seed from an image's seed."""
    seed = tf.cast(tf.reshape(seed, [2]), tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, k)


def _u(seed, lo: float, hi: float, shape=()):
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def _to_uint8(x):
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


# --- flip --------------------------------------------------------------------------------


def flip(image):
    return tf.reverse(image, axis=[1])


def random_flip(image, seed, cfg: AugmentConfig = STUDY):
    return tf.cond(_u(_seed(seed, 0), 0, 1) < cfg.flip_p, lambda: flip(image), lambda: image)


# --- Gaussian blur -----------------------------------------------------------------------


def gaussian_blur(image, sigma):
    """Separable Gaussian blur with reflected borders; sigma ~0 leaves the image as is."""
    x = tf.cast(image, tf.float32)[None]
    taps = tf.range(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=tf.float32)
    s = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    k = tf.exp(-(taps**2) / (2.0 * s * s))
    k = k / tf.reduce_sum(k)
    pad = [[0, 0], [_BLUR_RADIUS, _BLUR_RADIUS], [_BLUR_RADIUS, _BLUR_RADIUS], [0, 0]]
    x = tf.pad(x, pad, mode="REFLECT")
    kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, 3, 1])
    ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, 3, 1])
    x = tf.nn.depthwise_conv2d(x, kx, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, ky, [1, 1, 1, 1], "VALID")
    return _to_uint8(x[0])


def sample_blur_sigma(seed, cfg: AugmentConfig = STUDY):
    """Blur sigma for this image, or 0.0 when it is not one of the blurred half."""
    apply = _u(_seed(seed, 1), 0, 1) < cfg.blur_p
    return tf.where(apply, _u(_seed(seed, 2), *cfg.blur_sigma), 0.0)


def random_blur(image, seed, cfg: AugmentConfig = STUDY):
    sigma = sample_blur_sigma(seed, cfg)
    return tf.cond(sigma > 0, lambda: gaussian_blur(image, sigma), lambda: image)


# --- linear contrast ---------------------------------------------------------------------


def linear_contrast(image, alpha):
    return _to_uint8(127.5 + tf.cast(alpha, tf.float32) * (tf.cast(image, tf.float32) - 127.5))


def sample_contrast(seed, cfg: AugmentConfig = STUDY):
    return _u(_seed(seed, 3), *cfg.contrast)


def random_contrast(image, seed, cfg: AugmentConfig = STUDY):
    return linear_contrast(image, sample_contrast(seed, cfg))


# --- additive Gaussian noise -------------------------------------------------------------


def sample_noise(seed, shape, cfg: AugmentConfig = STUDY):
    """The noise field to add: N(0, scale) with scale U(range); one plane or one per channel."""
    scale = _u(_seed(seed, 4), *cfg.noise_scale)
    per_channel = _u(_seed(seed, 5), 0, 1) < cfg.noise_per_channel_p
    h, w = shape[0], shape[1]
    field = tf.random.stateless_normal(tf.stack([h, w, 3]), seed=_seed(seed, 6))
    shared = tf.tile(field[:, :, :1], [1, 1, 3])
    return tf.where(per_channel, field, shared) * scale, scale


def add_noise(image, noise):
    return _to_uint8(tf.cast(image, tf.float32) + noise)


def random_noise(image, seed, cfg: AugmentConfig = STUDY):
    noise, _ = sample_noise(seed, tf.shape(image), cfg)
    return add_noise(image, noise)


# --- multiply ----------------------------------------------------------------------------


def sample_multiply(seed, cfg: AugmentConfig = STUDY):
    """Per-channel factors (3,): all equal unless this image is one of the per-channel 20 %."""
    per_channel = _u(_seed(seed, 7), 0, 1) < cfg.multiply_per_channel_p
    factors = _u(_seed(seed, 8), *cfg.multiply, shape=(3,))
    return tf.where(per_channel, factors, tf.fill([3], factors[0]))


def multiply(image, factors):
    return _to_uint8(tf.cast(image, tf.float32) * tf.reshape(tf.cast(factors, tf.float32), [3]))


def random_multiply(image, seed, cfg: AugmentConfig = STUDY):
    return multiply(image, sample_multiply(seed, cfg))


# --- affine ------------------------------------------------------------------------------


def sample_affine(seed, cfg: AugmentConfig = STUDY):
    """(scale_x, scale_y, translate_x, translate_y, rotate_deg, shear_deg) for this image."""
    sx, sy = tf.unstack(_u(_seed(seed, 9), *cfg.scale, shape=(2,)))
    tx, ty = tf.unstack(_u(_seed(seed, 10), *cfg.translate, shape=(2,)))
    rot = _u(_seed(seed, 11), *cfg.rotate)
    shear = _u(_seed(seed, 12), *cfg.shear)
    return tf.stack([sx, sy, tx, ty, rot, shear])


def affine(image, params, fill_value: float = 0.0):
    """Scale, shear, rotate about the centre, then translate (fractions of width/height)."""
    sx, sy, tx, ty, rot, shear = tf.unstack(tf.cast(params, tf.float32))
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    th, sh = rot * math.pi / 180, shear * math.pi / 180
    c, s = tf.cos(th), tf.sin(th)
    # forward 2x2 map A = R @ Shear @ Scale, with Shear = [[1, tan(sh)], [0, 1]]
    a00, a01 = c * sx, (c * tf.tan(sh) - s) * sy
    a10, a11 = s * sx, (s * tf.tan(sh) + c) * sy
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    # output p' = C + T + A (p - C)  =>  input p = C + A^-1 (p' - C - T)
    ox, oy = cx + tx * w, cy + ty * h
    b0 = cx - (i00 * ox + i01 * oy)
    b1 = cy - (i10 * ox + i11 * oy)
    transform = tf.stack([i00, i01, b0, i10, i11, b1, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform,
        output_shape=shape[:2],
        fill_value=tf.constant(fill_value, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return _to_uint8(out[0])


def random_affine(image, seed, cfg: AugmentConfig = STUDY):
    return affine(image, sample_affine(seed, cfg), cfg.fill_value)


# --- the pipeline ------------------------------------------------------------------------

PIPELINE = (
    ("flip", random_flip),
    ("blur", random_blur),
    ("contrast", random_contrast),
    ("noise", random_noise),
    ("multiply", random_multiply),
    ("affine", random_affine),
)


def augment_image(image, seed, cfg: AugmentConfig = STUDY):
    """Apply the whole study pipeline to one uint8 (H, W, 3) image with a [2] int seed."""
    for k, (_, op) in enumerate(PIPELINE):
        image = op(
            image,
            tf.random.experimental.stateless_fold_in(
                tf.cast(tf.reshape(seed, [2]), tf.int64), 100 + k
            ),
            cfg,
        )
    return image


def train_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    augment: bool = True,
    cfg: AugmentConfig = STUDY,
    stain: StainAugmentConfig | None = None,
) -> tf.data.Dataset:
    """Shuffled (and augmented) batches of (float32 0-255 images, int labels), new every epoch.

    ``stain`` (a colour recipe, ``training.stain.COLOR_RECIPES``) adds
    :func:`training.stain.random_stain` after the study's augmentations; it only ever
    touches the training split, and never becomes part of the model.
    """
    from training.stain import random_stain

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(x), seed=seed, reshuffle_each_iteration=True
    )
    if augment or stain is not None:

        def one(xy, s):
            image = augment_image(xy[0], s, cfg) if augment else xy[0]
            if stain is not None:
                image = random_stain(
                    image,
                    tf.random.experimental.stateless_fold_in(tf.cast(s, tf.int64), 200),
                    stain,
                )
            return image, xy[1]

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return ds.batch(batch_size).map(_as_float).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray | None = None, *, batch_size: int) -> tf.data.Dataset:
    """Un-augmented batches in order, for validation, test and BatchNorm re-estimation."""
    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    return ds.batch(batch_size).map(_as_float).prefetch(tf.data.AUTOTUNE)


def _as_float(x, y=None):
    x = tf.cast(x, tf.float32)
    return x if y is None else (x, y)


def augmented_copies(images: np.ndarray, n: int, seed: int, cfg: AugmentConfig = STUDY):
    """``n`` augmented uint8 images drawn round-robin from ``images`` (for export-augmented)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    out = np.empty((n, *images.shape[1:]), dtype=np.uint8)
    fn = tf.function(lambda img, s: augment_image(img, s, cfg))
    for i in range(n):
        src = images[order[i % len(images)]]
        out[i] = fn(tf.constant(src), tf.constant([seed, i], tf.int64)).numpy()
    return out
