"""Stain and colour operations: HED separation, controlled shifts, jitter, normalisation
references.

All TensorFlow functions take float 0-255 RGB tensors of shape (..., 3) and return the
same; they serve training augmentation (``--color-augment``) and the robustness table in
every report. The stain-normalisation layers a packaged model carries live in
``runtime.layers``; here are their numpy references and the fitting of their targets
(``reinhard_reference``, ``macenko_reference``) on the training split.

HED is the Ruifrok & Johnston (2001) colour deconvolution, with the same stain vectors as
``skimage.color.rgb_from_hed`` (skimage is not installed here). Optical density uses
``-ln((I + 1) / 256)`` so a black pixel stays finite and the round trip is exact up to
floating point; skimage clips negative stain amounts, we do not, so jitter can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from runtime.layers import (
    LAB_ROWS,
    LAB_ROWS_INV,
    LMS_ROWS,
    LMS_ROWS_INV,
    MACENKO_ALPHA,
    MACENKO_BETA,
    MACENKO_OD_MAX,
    MIN_STAIN_PIXELS,
    STD_FLOOR,
)

#: Rows: haematoxylin, eosin, DAB absorbance per R, G, B (Ruifrok & Johnston 2001).
RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64
)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


# --- numpy reference ---------------------------------------------------------------------


def rgb_to_hed_np(rgb: np.ndarray) -> np.ndarray:
    """Stain amounts (..., 3) [H, E, D] from 0-255 RGB."""
    od = -np.log((np.asarray(rgb, np.float64) + 1.0) / 256.0)
    return od @ HED_FROM_RGB


def hed_to_rgb_np(hed: np.ndarray) -> np.ndarray:
    """0-255 float RGB (unclipped) from stain amounts."""
    return 256.0 * np.exp(-(np.asarray(hed, np.float64) @ RGB_FROM_HED)) - 1.0


# --- TensorFlow ops (float 0-255 in, float 0-255 out) ------------------------------------


def rgb_to_hed(rgb):
    od = -tf.math.log((tf.cast(rgb, tf.float32) + 1.0) / 256.0)
    return tf.linalg.matmul(od, tf.constant(HED_FROM_RGB, tf.float32))


def hed_to_rgb(hed):
    return 256.0 * tf.exp(-tf.linalg.matmul(hed, tf.constant(RGB_FROM_HED, tf.float32))) - 1.0


def _clip(x):
    return tf.clip_by_value(x, 0.0, 255.0)


def hed_jitter(rgb, alpha, beta):
    """Tellez et al. (2018) stain jitter: each stain amount s -> s * alpha + beta.

    ``alpha`` and ``beta`` broadcast against (..., 3); alpha 1 and beta 0 is the identity.
    """
    hed = rgb_to_hed(rgb)
    return _clip(hed_to_rgb(hed * tf.cast(alpha, tf.float32) + tf.cast(beta, tf.float32)))


def hue_shift(rgb, delta):
    """Rotate hue by ``delta`` turns (0.1 = 36 degrees); HSV value (max channel) is kept."""
    return _clip(tf.image.adjust_hue(tf.cast(rgb, tf.float32) / 255.0, delta) * 255.0)


def saturation_scale(rgb, factor):
    """Multiply HSV saturation by ``factor`` (clipped to 1); hue and value are kept."""
    return _clip(tf.image.adjust_saturation(tf.cast(rgb, tf.float32) / 255.0, factor) * 255.0)


def brightness_scale(rgb, factor):
    """Multiply every channel by ``factor``: a brighter or dimmer lamp."""
    return _clip(tf.cast(rgb, tf.float32) * factor)


def grayscale(rgb):
    """ITU-R 601 luma copied to all three channels."""
    grey = tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32))
    return tf.concat([grey, grey, grey], axis=-1)


# --- training-time colour augmentation --------------------------------------------------


@dataclass(frozen=True)
class StainAugmentConfig:
    """Ranges of one colour-augmentation recipe; drawn per image, after the study's
    augmentations, on the training split only.

    In order: HED stain jitter (alpha ~ U(1 - s, 1 + s), beta ~ U(-s, s) per stain), a hue
    rotation ~ U(-hue, hue) turns, a saturation factor, a brightness factor, and with
    probability ``grayscale_p`` the ITU-R 601 luma in all three channels. ``p`` is the
    probability that an image gets the colour jitter at all (the rest stay as the study's
    pipeline left them, so the clean stain is still seen). Identity ranges switch an
    operation off.
    """

    hed_sigma: float = 0.1
    hue: float = 0.05
    saturation: tuple[float, float] = (0.7, 1.3)
    brightness: tuple[float, float] = (1.0, 1.0)
    grayscale_p: float = 0.0
    p: float = 1.0


#: ``--color-augment light`` (before issue #14 ``--stain-augment``): HED 0.1, hue +-18
#: degrees, saturation x0.7-1.3. Kept to reproduce model B of docs/clinical-validity.md.
STAIN_AUGMENT = StainAugmentConfig()

#: ``--color-augment strong``, the default of ``python -m training train`` since issue #14:
#: wide enough that every shift of the robustness table lies inside it (hue +-72 degrees
#: covers +58, saturation x0.4-1.6 covers x0.5/x1.5, brightness x0.75-1.25 covers
#: x0.8/x1.2, HED 0.2 is Tellez et al.'s "strong"), on half of the images, plus grayscale
#: for a fifth of all images. Chosen by measurement: docs/clinical-validity.md, "Choosing
#: the recipe" (jittering every image left CML-1 under-fitted within the epochs this CPU
#: affords).
STRONG = StainAugmentConfig(
    hed_sigma=0.2,
    hue=0.2,
    saturation=(0.4, 1.6),
    brightness=(0.75, 1.25),
    grayscale_p=0.2,
    p=0.5,
)

#: The recipes ``--color-augment`` offers; "none" trains on the study's augmentations only.
COLOR_RECIPES: dict[str, StainAugmentConfig | None] = {
    "strong": STRONG,
    "light": STAIN_AUGMENT,
    "none": None,
}


def random_grayscale(image, seed, p: float):
    """With probability ``p`` (stateless, from ``seed``) the image in grayscale, else as is.

    Float 0-255 in and out. p = 1 always gives R = G = B; p = 0 is the identity.
    """
    x = tf.cast(image, tf.float32)
    draw = tf.random.stateless_uniform((), seed=tf.cast(tf.reshape(seed, [2]), tf.int64))
    return tf.cond(draw < p, lambda: grayscale(x), lambda: x)


def random_stain(image, seed, cfg: StainAugmentConfig = STAIN_AUGMENT):
    """One recipe's colour jitter on one uint8 image with a [2] int seed; uint8 out."""
    seed = tf.cast(tf.reshape(seed, [2]), tf.int64)

    def fold(k):
        return tf.random.experimental.stateless_fold_in(seed, k)

    def u(k, lo, hi, shape=()):
        return tf.random.stateless_uniform(shape, seed=fold(k), minval=lo, maxval=hi)

    def jitter(x):
        s = cfg.hed_sigma
        if s > 0:
            x = hed_jitter(x, u(0, 1.0 - s, 1.0 + s, (3,)), u(1, -s, s, (3,)))
        if cfg.hue > 0:
            x = hue_shift(x, u(2, -cfg.hue, cfg.hue))
        if cfg.saturation != (1.0, 1.0):
            x = saturation_scale(x, u(3, *cfg.saturation))
        if cfg.brightness != (1.0, 1.0):
            x = brightness_scale(x, u(4, *cfg.brightness))
        return x

    x = tf.cast(image, tf.float32)
    if cfg.p >= 1:
        x = jitter(x)
    elif cfg.p > 0:
        x = tf.cond(u(5, 0.0, 1.0) < cfg.p, lambda: jitter(x), lambda: x)
    if cfg.grayscale_p > 0:
        x = random_grayscale(x, fold(6), cfg.grayscale_p)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


# --- Reinhard normalisation (l-alpha-beta space, Reinhard et al. 2001) -------------------


def rgb_to_lab_np(rgb: np.ndarray) -> np.ndarray:
    return np.log10(((np.asarray(rgb, np.float64) + 1.0) / 256.0) @ LMS_ROWS) @ LAB_ROWS


def lab_to_rgb_np(lab: np.ndarray) -> np.ndarray:
    lms = 10.0 ** (np.asarray(lab, np.float64) @ LAB_ROWS_INV)
    return np.clip(lms @ LMS_ROWS_INV * 256.0 - 1.0, 0.0, 255.0)


def reinhard_stats_np(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image l-alpha-beta mean and std: two (N, 3) arrays."""
    lab = rgb_to_lab_np(np.asarray(images).reshape(len(images), -1, 3))
    return lab.mean(axis=1), lab.std(axis=1)


def reinhard_reference(images: np.ndarray, chunk: int = 256) -> dict[str, list[float]]:
    """The target: average per-image mean and std over (training) images."""
    means, stds = [], []
    for i in range(0, len(images), chunk):
        m, s = reinhard_stats_np(images[i : i + chunk])
        means.append(m)
        stds.append(s)
    return {
        "mean": np.concatenate(means).mean(axis=0).tolist(),
        "std": np.concatenate(stds).mean(axis=0).tolist(),
    }


def reinhard_normalize_np(images: np.ndarray, mean, std) -> np.ndarray:
    """Numpy reference of :class:`runtime.layers.ReinhardNormalization`: float 0-255, same shape."""
    x = np.asarray(images, np.float64)
    flat = rgb_to_lab_np(x.reshape(len(x), -1, 3))
    m, s = flat.mean(axis=1, keepdims=True), flat.std(axis=1, keepdims=True)
    out = (flat - m) / np.maximum(s, STD_FLOOR) * np.asarray(std) + np.asarray(mean)
    return lab_to_rgb_np(out).reshape(x.shape)


# --- Macenko normalisation (Macenko et al. 2009) -----------------------------------------


def _od_np(rgb):
    return -np.log((np.asarray(rgb, np.float64).reshape(-1, 3) + 1.0) / 256.0)


def macenko_stains_np(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(stain matrix (3, 2) [H, E columns], 99th-percentile concentrations (2,)) or None."""
    od = _od_np(rgb)
    tissue = od[((od > MACENKO_BETA) & (od < MACENKO_OD_MAX)).all(axis=1)]
    if len(tissue) < MIN_STAIN_PIXELS:
        return None
    eig = np.linalg.eigh(np.cov(tissue, rowvar=False))[1][:, 1:3]
    eig = eig * np.where(eig.sum(axis=0) < 0, -1.0, 1.0)  # eigenvectors point into +OD
    proj = tissue @ eig
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, MACENKO_ALPHA), np.percentile(phi, 100 - MACENKO_ALPHA)
    v1 = eig @ np.array([np.cos(lo), np.sin(lo)])
    v2 = eig @ np.array([np.cos(hi), np.sin(hi)])
    # haematoxylin absorbs more red than eosin does: it is the first column
    stains = np.stack([v1, v2], axis=1) if v1[0] > v2[0] else np.stack([v2, v1], axis=1)
    conc = od @ np.linalg.pinv(stains).T
    return stains, np.percentile(conc, 99, axis=0)


def macenko_reference(images: np.ndarray, max_images: int = 64) -> dict[str, list]:
    """Target stain matrix and concentrations from pixels pooled over (training) images."""
    idx = np.linspace(0, len(images) - 1, min(max_images, len(images))).astype(int)
    fitted = macenko_stains_np(np.asarray(images)[idx])
    if fitted is None:
        raise ValueError("the reference images have too few stained pixels for Macenko")
    stains, max_conc = fitted
    return {"stains": stains.tolist(), "max_concentrations": max_conc.tolist()}


def macenko_normalize_np(image: np.ndarray, stains, max_concentrations) -> np.ndarray:
    """Numpy reference of :class:`runtime.layers.MacenkoNormalization`, one image: float 0-255."""
    fitted = macenko_stains_np(image)
    if fitted is None:
        return np.asarray(image, np.float64)
    own, own_max = fitted
    conc = _od_np(image) @ np.linalg.pinv(own).T
    conc = conc * (np.asarray(max_concentrations) / own_max)
    out = 256.0 * np.exp(-(conc @ np.asarray(stains).T)) - 1.0
    return np.clip(out, 0.0, 255.0).reshape(np.shape(image))
