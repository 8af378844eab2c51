"""The colour recipes of ``--color-augment`` compute what they claim, on generated images."""

from __future__ import annotations

import colorsys
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from training import stain

#: Only the named operation on: every other range is the identity.
OFF = stain.StainAugmentConfig(hed_sigma=0.0, hue=0.0, saturation=(1.0, 1.0))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(30, 226, (3, 10, 10, 3), dtype=np.uint8)


def _run(image, seed, cfg):
    return stain.random_stain(tf.constant(image), tf.constant(seed, tf.int64), cfg).numpy()


def test_random_grayscale_at_p1_gives_equal_channels_and_at_p0_the_identity(images):
    x = tf.constant(images[0], tf.float32)
    for seed in range(5):
        grey = stain.random_grayscale(x, tf.constant([seed, 1]), 1.0).numpy()
        assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
        assert np.allclose(grey, stain.grayscale(x).numpy())
        assert np.array_equal(stain.random_grayscale(x, tf.constant([seed, 1]), 0.0).numpy(), x)


def test_random_grayscale_hits_about_p_of_the_images(images):
    x = tf.constant(images[0], tf.float32)
    outs = [stain.random_grayscale(x, tf.constant([s, 7]), 0.2).numpy() for s in range(400)]
    grey = [np.ptp(out, axis=-1).max() == 0 for out in outs]
    assert 0.14 < np.mean(grey) < 0.26  # binomial(400, 0.2): sd 2 points


def test_every_recipe_is_repeatable_by_seed_and_changes_colour_not_layout(images):
    for name, cfg in stain.COLOR_RECIPES.items():
        if cfg is None:
            continue
        one = _run(images[0], [1, 2], cfg)
        assert np.array_equal(one, _run(images[0], [1, 2], cfg)), name
        assert not np.array_equal(one, _run(images[0], [1, 3], cfg)), name
        assert one.dtype == np.uint8 and one.shape == images[0].shape
        flat = np.full((6, 6, 3), (180, 120, 200), np.uint8)
        out = _run(flat, [5, 6], cfg)
        assert (out.reshape(-1, 3) == out[0, 0]).all(), name


def test_the_strong_recipe_with_grayscale_always_on_yields_r_equal_g_equal_b(images):
    cfg = replace(stain.STRONG, grayscale_p=1.0)
    for seed in range(4):
        out = _run(images[1], [seed, 0], cfg).astype(int)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_identity_ranges_leave_the_image_unchanged(images):
    assert np.array_equal(_run(images[2], [3, 4], OFF), images[2])
    never = replace(stain.STRONG, p=0.0, grayscale_p=0.0)
    assert np.array_equal(_run(images[2], [3, 4], never), images[2])


def _stain_grid() -> np.ndarray:
    """64 uint8 pixels whose H, E and D amounts vary independently, none near clipping."""
    amounts = np.linspace(0.05, 0.45, 4)
    hed = np.stack(np.meshgrid(amounts, amounts, amounts, indexing="ij"), -1).reshape(-1, 3)
    rgb = stain.hed_to_rgb_np(hed)
    assert rgb.min() > 20 and rgb.max() < 250
    return np.round(rgb).astype(np.uint8).reshape(8, 8, 3)


def _hed_affine(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-stain least-squares (alpha, beta) with after = before * alpha + beta, on the
    pixels the jitter did not push out of 0-255 (clipping breaks the affine relation)."""
    kept = ((after > 0) & (after < 255)).all(axis=-1).reshape(-1)
    assert kept.sum() >= 16
    h0 = stain.rgb_to_hed_np(before.reshape(-1, 3)[kept])
    h1 = stain.rgb_to_hed_np(after.reshape(-1, 3)[kept])
    fits = [np.polyfit(h0[:, k], h1[:, k], 1) for k in range(3)]
    return np.array([f[0] for f in fits]), np.array([f[1] for f in fits])


@pytest.mark.parametrize("sigma", [0.1, 0.2])
def test_hed_jitter_draws_alpha_and_beta_within_sigma_and_spans_the_range(sigma):
    grid = _stain_grid()
    cfg = replace(OFF, hed_sigma=sigma)
    fits = [_hed_affine(grid, _run(grid, [seed, 9], cfg)) for seed in range(40)]
    alphas, betas = np.array([f[0] for f in fits]), np.array([f[1] for f in fits])
    tol = 0.02  # uint8 rounding of the output, in stain-amount units
    assert (np.abs(alphas - 1) <= sigma + tol).all() and (np.abs(betas) <= sigma + tol).all()
    # the whole range is used, not a narrower one
    assert (np.abs(alphas - 1).max(axis=0) > 0.7 * sigma).all()
    assert (np.abs(betas).max(axis=0) > 0.7 * sigma).all()


def test_the_strong_hue_range_covers_the_58_degree_shift_and_stays_within_72():
    rgb = colorsys.hsv_to_rgb(0.9, 0.6, 0.8)
    pixel = np.array(rgb) * 255
    base_h = colorsys.rgb_to_hsv(*(pixel / 255))[0]
    cfg = replace(OFF, hue=stain.STRONG.hue)
    deltas = []
    for seed in range(200):
        out = _run(np.round(pixel).astype(np.uint8).reshape(1, 1, 3), [seed, 2], cfg)
        h = colorsys.rgb_to_hsv(*(out.reshape(3) / 255))[0]
        deltas.append((h - base_h + 0.5) % 1 - 0.5)
    spread = np.abs(deltas)
    assert spread.max() <= stain.STRONG.hue + 0.01
    assert (spread > 0.16).any()  # the robustness table's +0.16 turn is inside the range


def test_brightness_and_saturation_factors_stay_within_their_ranges():
    grey = np.full((1, 1, 3), 150, np.uint8)
    cfg = replace(OFF, brightness=(0.75, 1.25))
    factors = np.array([_run(grey, [s, 0], cfg)[0, 0, 0] / 150 for s in range(100)])
    assert factors.min() >= 0.75 - 0.01 and factors.max() <= 1.25 + 0.01
    assert factors.min() < 0.8 and factors.max() > 1.2  # covers x0.8 and x1.2

    rgb = np.round(np.array(colorsys.hsv_to_rgb(0.95, 0.5, 0.8)) * 255).astype(np.uint8)
    cfg = replace(OFF, saturation=stain.STRONG.saturation)
    sats = [
        colorsys.rgb_to_hsv(*(_run(rgb.reshape(1, 1, 3), [s, 1], cfg).reshape(3) / 255))[1]
        for s in range(100)
    ]
    base = colorsys.rgb_to_hsv(*(rgb / 255))[1]
    ratio = np.array(sats) / base
    assert ratio.min() >= 0.4 - 0.02 and ratio.max() <= 1.6 + 0.02
    assert ratio.min() < 0.5 and ratio.max() > 1.5  # covers x0.5 and x1.5


def test_p_leaves_that_share_of_images_untouched(images):
    cfg = replace(stain.STRONG, p=0.5, grayscale_p=0.0)
    same = [np.array_equal(_run(images[0], [s, 3], cfg), images[0]) for s in range(200)]
    assert 0.4 < np.mean(same) < 0.6
