"""Stain and colour operations: HED separation, controlled shifts, jitter, Reinhard layer.

All TensorFlow functions take float 0-255 RGB tensors of shape (..., 3) and return the
same; they serve three callers that must agree: training augmentation (``--stain-augment``),
the robustness table in every report, and stain normalisation inside the packaged model.

HED is the Ruifrok & Johnston (2001) colour deconvolution, with the same stain vectors as
``skimage.color.rgb_from_hed`` (skimage is not installed here). Optical density uses
``-ln((I + 1) / 256)`` so a black pixel stays finite and the round trip is exact up to
floating point; skimage clips negative stain amounts, we do not, so jitter can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

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


# --- training-time stain augmentation ----------------------------------------------------


@dataclass(frozen=True)
class StainAugmentConfig:
    """Ranges of ``--stain-augment``; drawn per image, after the study's augmentations.

    HED jitter at 0.1 sits between Tellez et al.'s "light" (0.05) and "strong" (0.2)
    settings; hue and saturation ranges cover a different stain batch or white balance.
    """

    hed_sigma: float = 0.1  # alpha ~ U(1 - s, 1 + s), beta ~ U(-s, s) per stain
    hue: float = 0.05  # hue shift ~ U(-h, h) turns
    saturation: tuple[float, float] = (0.7, 1.3)


STAIN_AUGMENT = StainAugmentConfig()


def random_stain(image, seed, cfg: StainAugmentConfig = STAIN_AUGMENT):
    """HED jitter, then hue and saturation jitter, on one uint8 image with a [2] int seed."""
    seed = tf.cast(tf.reshape(seed, [2]), tf.int64)

    def u(k, lo, hi, shape=()):
        s = tf.random.experimental.stateless_fold_in(seed, k)
        return tf.random.stateless_uniform(shape, seed=s, minval=lo, maxval=hi)

    x = tf.cast(image, tf.float32)
    s = cfg.hed_sigma
    x = hed_jitter(x, u(0, 1.0 - s, 1.0 + s, (3,)), u(1, -s, s, (3,)))
    x = hue_shift(x, u(2, -cfg.hue, cfg.hue))
    x = saturation_scale(x, u(3, *cfg.saturation))
    return tf.cast(tf.round(x), tf.uint8)


# --- Reinhard normalisation (l-alpha-beta space, Reinhard et al. 2001) -------------------

_LMS_FROM_RGB = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
_LAB_FROM_LOGLMS = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
# Row-vector forms (pixels are rows): lab = log10(rgb' @ A) @ B, rgb' = (I + 1) / 256.
_A = _LMS_FROM_RGB.T
_B = _LAB_FROM_LOGLMS.T
_B_INV = np.linalg.inv(_B)
_A_INV = np.linalg.inv(_A)
_STD_FLOOR = 1e-4  # a flat image has no spread to match: leave its channel where it is


def rgb_to_lab_np(rgb: np.ndarray) -> np.ndarray:
    return np.log10(((np.asarray(rgb, np.float64) + 1.0) / 256.0) @ _A) @ _B


def lab_to_rgb_np(lab: np.ndarray) -> np.ndarray:
    return np.clip(
        (10.0 ** (np.asarray(lab, np.float64) @ _B_INV)) @ _A_INV * 256.0 - 1.0, 0.0, 255.0
    )


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
    """Numpy reference of :class:`ReinhardNormalization`: float 0-255, same shape."""
    x = np.asarray(images, np.float64)
    flat = rgb_to_lab_np(x.reshape(len(x), -1, 3))
    m, s = flat.mean(axis=1, keepdims=True), flat.std(axis=1, keepdims=True)
    out = (flat - m) / np.maximum(s, _STD_FLOOR) * np.asarray(std) + np.asarray(mean)
    return lab_to_rgb_np(out).reshape(x.shape)


@keras.saving.register_keras_serializable(package="leukweb")
class ReinhardNormalization(keras.layers.Layer):
    """Match each image's l-alpha-beta mean and std to a stored reference (0-255 RGB in/out).

    Lives inside the packaged model, so inference normalises exactly as training did.
    """

    def __init__(self, target_mean, target_std, **kwargs):
        super().__init__(**kwargs)
        self.target_mean = [float(v) for v in target_mean]
        self.target_std = [float(v) for v in target_std]

    def call(self, x):
        x = tf.cast(x, tf.float32)
        lms = tf.linalg.matmul((x + 1.0) / 256.0, tf.constant(_A, tf.float32))
        lab = tf.linalg.matmul(tf.math.log(lms) / np.log(10.0), tf.constant(_B, tf.float32))
        m = tf.reduce_mean(lab, axis=[-3, -2], keepdims=True)
        s = tf.math.reduce_std(lab, axis=[-3, -2], keepdims=True)
        lab = (lab - m) / tf.maximum(s, _STD_FLOOR) * tf.constant(self.target_std) + tf.constant(
            self.target_mean
        )
        lms = tf.pow(10.0, tf.linalg.matmul(lab, tf.constant(_B_INV, tf.float32)))
        rgb = tf.linalg.matmul(lms, tf.constant(_A_INV, tf.float32)) * 256.0 - 1.0
        return tf.clip_by_value(rgb, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }


# --- Macenko normalisation (Macenko et al. 2009) -----------------------------------------

MACENKO_BETA = 0.15  # optical density below this in any channel is background, not stain
# Near-black pixels (OD above this, I < ~12) are not stain either: the affine
# augmentation's black fill would otherwise dominate the estimate.
MACENKO_OD_MAX = 3.0
MACENKO_ALPHA = 1.0  # robust extremes: the 1st and 99th percentile of the stain angle
_MIN_STAIN_PIXELS = 16  # fewer stained pixels than this: nothing to estimate, leave as is


def _od_np(rgb):
    return -np.log((np.asarray(rgb, np.float64).reshape(-1, 3) + 1.0) / 256.0)


def macenko_stains_np(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(stain matrix (3, 2) [H, E columns], 99th-percentile concentrations (2,)) or None."""
    od = _od_np(rgb)
    tissue = od[((od > MACENKO_BETA) & (od < MACENKO_OD_MAX)).all(axis=1)]
    if len(tissue) < _MIN_STAIN_PIXELS:
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
    """Numpy reference of :class:`MacenkoNormalization` for one image: float 0-255."""
    fitted = macenko_stains_np(image)
    if fitted is None:
        return np.asarray(image, np.float64)
    own, own_max = fitted
    conc = _od_np(image) @ np.linalg.pinv(own).T
    conc = conc * (np.asarray(max_concentrations) / own_max)
    out = 256.0 * np.exp(-(conc @ np.asarray(stains).T)) - 1.0
    return np.clip(out, 0.0, 255.0).reshape(np.shape(image))


def _percentile(sorted_values, n, q):
    """np.percentile's linear interpolation on the first ``n`` of ascending values."""
    pos = q / 100.0 * (tf.cast(n, tf.float32) - 1.0)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, n - 1)
    frac = pos - tf.floor(pos)
    return tf.gather(sorted_values, lo) * (1 - frac) + tf.gather(sorted_values, hi) * frac


@keras.saving.register_keras_serializable(package="leukweb")
class MacenkoNormalization(keras.layers.Layer):
    """Re-express each image in a stored reference stain matrix and intensity (0-255 in/out).

    Per image: estimate its H and E vectors from the optical densities of stained pixels
    (the plane of the two main eigenvectors, extremes of the angle within it), unmix,
    rescale the concentrations to the reference's 99th percentiles, remix with the
    reference vectors. Images with too few stained pixels pass unchanged.
    """

    def __init__(self, stains, max_concentrations, **kwargs):
        super().__init__(**kwargs)
        self.stains = [[float(v) for v in row] for row in stains]
        self.max_concentrations = [float(v) for v in max_concentrations]

    def _one(self, image):
        od = -tf.math.log((tf.reshape(image, [-1, 3]) + 1.0) / 256.0)
        mask = tf.reduce_all((od > MACENKO_BETA) & (od < MACENKO_OD_MAX), axis=1)
        n = tf.reduce_sum(tf.cast(mask, tf.int32))

        def normalise():
            w = tf.cast(mask, tf.float32)[:, None]
            mean = tf.reduce_sum(od * w, axis=0) / tf.cast(n, tf.float32)
            centred = (od - mean) * w
            cov = tf.linalg.matmul(centred, centred, transpose_a=True)
            eig = tf.linalg.eigh(cov)[1][:, 1:3]
            eig = eig * tf.where(tf.reduce_sum(eig, axis=0) < 0, -1.0, 1.0)
            proj = tf.linalg.matmul(od, eig)
            phi = tf.math.atan2(proj[:, 1], proj[:, 0])
            phi = tf.sort(tf.where(mask, phi, np.inf))
            lo = _percentile(phi, n, MACENKO_ALPHA)
            hi = _percentile(phi, n, 100 - MACENKO_ALPHA)
            v1 = tf.linalg.matvec(eig, tf.stack([tf.cos(lo), tf.sin(lo)]))
            v2 = tf.linalg.matvec(eig, tf.stack([tf.cos(hi), tf.sin(hi)]))
            own = tf.where(v1[0] > v2[0], tf.stack([v1, v2], axis=1), tf.stack([v2, v1], axis=1))
            conc = tf.linalg.matmul(od, tf.linalg.pinv(own), transpose_b=True)
            total = tf.shape(conc)[0]
            own_max = _percentile(tf.sort(conc, axis=0), total, 99.0)
            conc = conc * (tf.constant(self.max_concentrations) / own_max)
            ref = tf.constant(self.stains, tf.float32)
            rgb = 256.0 * tf.exp(-tf.linalg.matmul(conc, ref, transpose_b=True)) - 1.0
            return tf.reshape(tf.clip_by_value(rgb, 0.0, 255.0), tf.shape(image))

        return tf.cond(n >= _MIN_STAIN_PIXELS, normalise, lambda: image)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        return tf.map_fn(self._one, x, fn_output_signature=tf.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "stains": self.stains,
            "max_concentrations": self.max_concentrations,
        }
