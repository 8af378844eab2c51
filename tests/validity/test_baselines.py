"""Each shortcut baseline computes what its description claims."""

import numpy as np
import pytest

from training.baselines import HIST_BINS, colour_features, run_baselines, thumbnail_features


def test_colour_features_are_channel_means_stds_and_an_8_bin_histogram():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[0, :2, :, 0] = 255  # red: half 255, half 0
    img[0, :, :, 1] = 100  # green: constant
    img[0, :, :, 2] = np.arange(16).reshape(4, 4) * 16  # blue: one pixel per 16 levels
    f = colour_features(img)[0]
    assert f.shape == (6 + 3 * HIST_BINS,)
    assert f[:3] == pytest.approx([0.5, 100 / 255, img[0, :, :, 2].mean() / 255])
    assert f[3:6] == pytest.approx([0.5, 0.0, img[0, :, :, 2].std() / 255], abs=1e-6)
    red, green, blue = f[6:14], f[14:22], f[22:30]
    assert red[0] == pytest.approx(0.5) and red[-1] == pytest.approx(0.5)
    assert green[100 // 32] == pytest.approx(1.0) and green.sum() == pytest.approx(1.0)
    assert blue == pytest.approx(np.full(8, 1 / 8))  # 16 levels spread 2 per bin


def test_thumbnail_is_the_field_shrunk_to_8x8_rgb():
    img = np.zeros((1, 64, 64, 3), np.uint8)
    img[0, :32] = (255, 0, 0)  # top half red, bottom half black
    f = thumbnail_features(img)[0].reshape(8, 8, 3)
    assert f.shape == (8, 8, 3)
    assert f[:3, :, 0] == pytest.approx(1.0) and f[5:, :, 0] == pytest.approx(0.0)
    assert f[..., 1:].max() == 0.0


def _colour_classes(n: int, seed: int):
    """Two classes that differ only by tint; layout is random noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(60, 200, (2 * n, 16, 16, 3)).astype(np.int16)
    y = np.repeat([0, 1], n)
    x[y == 1, :, :, 0] += 40
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_the_colour_baseline_separates_classes_that_differ_only_by_stain():
    x_tr, y_tr = _colour_classes(30, 0)
    x_te, y_te = _colour_classes(10, 1)
    out = run_baselines(x_tr, y_tr, x_te, y_te, seed=0)
    assert out["colour_stats"]["accuracy"] == 1.0
    assert out["colour_stats"]["n_features"] == 30 and out["thumbnail_8x8"]["n_features"] == 192
    assert len(out["colour_stats"]["predictions"]) == len(y_te)
