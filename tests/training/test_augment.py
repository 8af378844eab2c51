"""Each augmentation keeps shape and dtype and stays within the study's parameter range."""

import numpy as np
import pytest
import tensorflow as tf

from training import augment as A
from training.synth import generate

SEEDS = [tf.constant([7, i], tf.int64) for i in range(200)]


@pytest.fixture(scope="module")
def image():
    x, _ = generate(["AML"], per_class=1, size=40, seed=2)
    return tf.constant(x[0])


@pytest.mark.parametrize("name,op", A.PIPELINE)
def test_each_op_keeps_shape_and_dtype(image, name, op):
    for seed in SEEDS[:5]:
        out = op(image, seed)
        assert out.shape == image.shape, name
        assert out.dtype == tf.uint8, name


def test_whole_pipeline_keeps_shape_and_dtype_and_is_seeded(image):
    a = A.augment_image(image, SEEDS[0]).numpy()
    b = A.augment_image(image, SEEDS[0]).numpy()
    c = A.augment_image(image, SEEDS[1]).numpy()
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_flip_happens_about_half_the_time_and_is_exact(image):
    flipped = [not np.array_equal(A.random_flip(image, s).numpy(), image.numpy()) for s in SEEDS]
    assert 0.35 < np.mean(flipped) < 0.65
    assert np.array_equal(A.flip(image).numpy(), image.numpy()[:, ::-1])


def test_blur_sigma_is_0_to_0_5_on_about_half():
    sigmas = np.array([float(A.sample_blur_sigma(s)) for s in SEEDS])
    assert sigmas.min() >= 0.0 and sigmas.max() <= 0.5
    assert 0.35 < np.mean(sigmas > 0) < 0.65


def test_blur_with_sigma_zero_is_identity_and_smooths_otherwise(image):
    assert np.array_equal(A.gaussian_blur(image, 0.0).numpy(), image.numpy())
    blurred = A.gaussian_blur(image, 0.5).numpy().astype(float)
    assert (
        np.abs(np.diff(blurred, axis=1)).mean()
        < np.abs(np.diff(image.numpy().astype(float), axis=1)).mean()
    )


def test_contrast_alpha_is_within_0_75_and_1_5(image):
    alphas = np.array([float(A.sample_contrast(s)) for s in SEEDS])
    assert alphas.min() >= 0.75 and alphas.max() <= 1.5
    out = A.linear_contrast(image, 0.75).numpy().astype(float)
    expected = np.clip(np.round(127.5 + 0.75 * (image.numpy().astype(float) - 127.5)), 0, 255)
    assert np.abs(out - expected).max() <= 1


def test_noise_scale_is_within_0_and_5_percent_of_255(image):
    per_channel = []
    for s in SEEDS:
        noise, scale = A.sample_noise(s, tf.shape(image))
        assert 0.0 <= float(scale) <= 0.05 * 255
        noise = noise.numpy()
        per_channel.append(not np.allclose(noise[..., 0], noise[..., 1]))
        if float(scale) > 1:
            assert noise.std() < 1.5 * float(scale)
    assert 0.35 < np.mean(per_channel) < 0.65


def test_multiply_factors_are_within_0_8_and_1_2_per_channel_for_a_fifth(image):
    per_channel = []
    for s in SEEDS:
        f = A.sample_multiply(s).numpy()
        assert f.min() >= 0.8 and f.max() <= 1.2
        per_channel.append(len(set(f.tolist())) > 1)
    assert 0.1 < np.mean(per_channel) < 0.3
    out = A.multiply(image, [1.2, 1.2, 1.2]).numpy().astype(float)
    assert np.all(out <= np.minimum(255, image.numpy() * 1.2 + 1))


def test_affine_parameters_stay_in_range_and_identity_is_identity(image):
    for s in SEEDS:
        sx, sy, tx, ty, rot, shear = A.sample_affine(s).numpy()
        assert 0.8 <= sx <= 1.2 and 0.8 <= sy <= 1.2
        assert -0.2 <= tx <= 0.2 and -0.2 <= ty <= 0.2
        assert -25 <= rot <= 25 and -8 <= shear <= 8
    same = A.affine(image, [1, 1, 0, 0, 0, 0]).numpy()
    assert np.abs(same.astype(int) - image.numpy()).max() <= 1
    shifted = A.affine(image, [1, 1, 0.25, 0, 0, 0]).numpy()
    assert np.array_equal(shifted[:, 10:], image.numpy()[:, :30])
    assert (shifted[:, :10] == 0).all()  # constant black fill, as imgaug's default


def test_training_dataset_yields_float_batches_of_the_same_shape():
    x, y = generate(per_class=4, size=32, seed=1)
    batches = list(A.train_dataset(x, y, batch_size=8, seed=0))
    assert sum(len(b[0]) for b in batches) == len(x)
    assert batches[0][0].dtype == tf.float32 and batches[0][0].shape[1:] == (32, 32, 3)
    assert float(tf.reduce_max(batches[0][0])) <= 255.0
