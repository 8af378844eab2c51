"""Each colour/stain shift does what its name says; strength 0 (or 1) is the identity."""

import colorsys

import numpy as np
import pytest

from training import stain
from training.robustness import SHIFTS, Shift, apply_shift, robustness


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)


def test_hed_round_trip_is_near_identity(images):
    assert np.abs(stain.hed_to_rgb_np(stain.rgb_to_hed_np(images)) - images).max() < 1e-9
    tf_back = np.asarray(stain.hed_to_rgb(stain.rgb_to_hed(images.astype(np.float32))))
    assert np.abs(tf_back - images).max() < 0.01
    assert np.allclose(
        np.asarray(stain.rgb_to_hed(images.astype(np.float32))),
        stain.rgb_to_hed_np(images),
        atol=1e-4,
    )


def test_pure_haematoxylin_colour_separates_into_h_only():
    # Light through H only: OD proportional to the H row of the Ruifrok-Johnston matrix.
    od = 0.8 * stain.RGB_FROM_HED[0]
    rgb = 256 * np.exp(-od) - 1
    h, e, d = stain.rgb_to_hed_np(rgb)
    assert h == pytest.approx(0.8) and abs(e) < 1e-9 and abs(d) < 1e-9


@pytest.mark.parametrize(
    "shift",
    [
        Shift("hue", 0.0),
        Shift("saturation", 1.0),
        Shift("brightness", 1.0),
        Shift("hed", 0.0),
        Shift("grayscale", 0.0),
    ],
)
def test_strength_zero_is_the_identity(images, shift):
    assert np.abs(apply_shift(images, shift).astype(int) - images).max() <= 1


def test_grayscale_has_equal_channels_at_the_luma(images):
    out = apply_shift(images, Shift("grayscale", 1.0)).astype(float)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    luma = images.astype(float) @ np.array([0.2989, 0.587, 0.114])
    assert np.abs(out[..., 0] - luma).max() <= 1.0


def test_hue_shift_keeps_value_and_saturation_and_turns_the_hue(images):
    out = apply_shift(images, Shift("hue", 0.25))
    assert np.abs(out.max(-1).astype(int) - images.max(-1)).max() <= 1  # HSV value kept
    r, g, b = (int(v) for v in images[0, 0, 0])
    r2, g2, b2 = (int(v) for v in out[0, 0, 0])
    h, s, _ = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    h2, s2, _ = colorsys.rgb_to_hsv(r2 / 255, g2 / 255, b2 / 255)
    if s > 0.2:
        assert (h2 - h) % 1.0 == pytest.approx(0.25, abs=0.02)
        assert s2 == pytest.approx(s, abs=0.02)


def test_saturation_zero_is_grey_and_brightness_scales(images):
    grey = apply_shift(images, Shift("saturation", 0.0)).astype(int)
    assert (grey.max(-1) - grey.min(-1)).max() <= 1
    dim = apply_shift(images, Shift("brightness", 0.5)).astype(float)
    assert np.abs(dim - np.round(images * 0.5)).max() <= 1


def test_hed_jitter_is_seeded_and_stays_in_stain_space(images):
    a = apply_shift(images, Shift("hed", 0.2), seed=3)
    assert np.array_equal(a, apply_shift(images, Shift("hed", 0.2), seed=3))
    assert not np.array_equal(a, apply_shift(images, Shift("hed", 0.2), seed=4))
    assert np.abs(a.astype(int) - images).mean() > 1  # it did change the colours
    # scaling H alone by alpha, E and D untouched: the HED amounts move exactly so
    x = images.astype(np.float32)
    jit = np.asarray(stain.hed_jitter(x, np.array([1.5, 1.0, 1.0], np.float32), 0.0))
    before, after = stain.rgb_to_hed_np(x), stain.rgb_to_hed_np(jit)
    inside = (jit > 1).all(-1) & (jit < 254).all(-1)  # not clipped
    assert np.allclose(after[inside][:, 0], 1.5 * before[inside][:, 0], atol=1e-3)
    assert np.allclose(after[inside][:, 1:], before[inside][:, 1:], atol=1e-3)


def test_robustness_scores_every_shift_on_the_same_images(images):
    y = np.array([0, 1, 0, 1])

    def by_redness(batch):  # a "model" that reads only colour: shifts must move it
        red = batch[..., 0].mean(axis=(1, 2)) > batch[..., 2].mean(axis=(1, 2))
        return np.stack([red, ~red], axis=1).astype(float)

    out = robustness(by_redness, images, y, seed=0)
    assert [r["label"] for r in out["shifts"]] == [s.label for s in SHIFTS]
    expected = float((by_redness(images).argmax(1) == y).mean())
    assert out["clean"]["accuracy"] == expected
    grey = next(r for r in out["shifts"] if r["kind"] == "grayscale")
    assert grey["accuracy"] == float((y == 1).mean())  # grey: red == blue, always class 1
    assert grey["accuracy_drop"] == pytest.approx(expected - grey["accuracy"])
    assert out == robustness(by_redness, images, y, seed=0)
    assert "out_of_scope" not in out["clean"]


def test_robustness_reports_what_the_guard_flags_and_the_accuracy_of_the_rest(images):
    y = np.array([0, 1, 0, 1])

    def always_zero(batch):
        return np.tile([1.0, 0.0], (len(batch), 1))

    def grey_is_out(batch):  # a "guard" that flags colourless images
        b = batch.astype(int)
        return (b.max(-1) - b.min(-1)).mean(axis=(1, 2)) < 1

    out = robustness(always_zero, images, y, flag_fn=grey_is_out)
    assert out["clean"]["out_of_scope"] == 0.0 and out["clean"]["accuracy_in_scope"] == 0.5
    grey = next(r for r in out["shifts"] if r["kind"] == "grayscale")
    assert grey["out_of_scope"] == 1.0 and grey["accuracy_in_scope"] is None


def test_stain_augmentation_is_seeded_and_changes_colour_not_layout(images):
    import tensorflow as tf

    one = stain.random_stain(tf.constant(images[0]), tf.constant([1, 2])).numpy()
    assert np.array_equal(
        one, stain.random_stain(tf.constant(images[0]), tf.constant([1, 2])).numpy()
    )
    other = stain.random_stain(tf.constant(images[0]), tf.constant([1, 3])).numpy()
    assert not np.array_equal(one, other) and one.dtype == np.uint8
    # a flat image stays flat: colour changes, pixel layout does not
    flat = np.full((8, 8, 3), (180, 120, 200), np.uint8)
    out = stain.random_stain(tf.constant(flat), tf.constant([5, 6])).numpy()
    assert (out.reshape(-1, 3) == out[0, 0]).all()
