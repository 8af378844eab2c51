"""The Mahalanobis guard flags obvious outliers and passes in-distribution samples."""

import numpy as np
import pytest

from runtime.guard import MahalanobisGuard
from training.ood import fit_features


def _clusters(n: int, seed: int, d: int = 16):
    rng = np.random.default_rng(seed)
    centres = np.array(
        [np.full(d, -3.0), np.full(d, 3.0), np.r_[np.full(d // 2, 3.0), np.full(d - d // 2, -3.0)]]
    )
    y = rng.integers(0, 3, n)
    scale = rng.uniform(0.5, 2.0, d)  # unequal spreads: a Euclidean distance would be wrong
    return centres[y] + rng.normal(0, 1, (n, d)) * scale, y


@pytest.fixture(scope="module")
def guard():
    f_tr, y_tr = _clusters(600, 0)
    f_va, _ = _clusters(300, 1)
    return fit_features(f_tr, y_tr, f_va, layer="features", n_classes=3)


def test_in_distribution_samples_pass_at_about_the_chosen_rate(guard):
    f_te, _ = _clusters(1000, 2)
    assert guard.flag(f_te).mean() < 0.03  # threshold at the 99th validation percentile


def test_obvious_outliers_are_flagged(guard):
    rng = np.random.default_rng(3)
    far = rng.normal(0, 1, (200, 16)) * 2 + 15  # nowhere near a class mean
    between = np.zeros((50, 16))  # between classes, inside no cluster
    wrong_shape = _clusters(200, 4)[0] * np.r_[np.ones(8), 4 * np.ones(8)]
    assert guard.flag(far).all()
    assert guard.flag(between).mean() > 0.9
    assert guard.flag(wrong_shape).mean() > 0.9


def test_the_score_is_the_distance_to_the_nearest_class_mean(guard):
    f = guard.means[1][None] + 0.0
    assert guard.score(f)[0] == pytest.approx(0.0, abs=1e-9)
    delta = np.linalg.cholesky(np.linalg.inv(guard.precision))[:, 0]  # one unit of spread
    assert guard.score(guard.means[1][None] + delta)[0] == pytest.approx(1.0, rel=1e-6)


def test_the_fast_score_equals_the_textbook_quadratic_form_on_wide_features():
    """score() whitens with a Cholesky factor instead of forming (f - mu)^T P (f - mu) per
    image and class: the same distances, at a ResNet-50's feature width."""
    rng = np.random.default_rng(8)
    d = 2048
    spread = rng.normal(size=(2 * d, d))
    precision = np.linalg.inv(spread.T @ spread / (2 * d) + 0.1 * np.eye(d))
    guard = MahalanobisGuard(rng.normal(size=(5, d)), precision, threshold=1.0, layer="f")
    f = rng.normal(size=(16, d)).astype(np.float32)
    diff = np.asarray(f, np.float64)[:, None, :] - guard.means[None]
    textbook = np.sqrt(np.einsum("nkd,de,nke->nk", diff, precision, diff).min(axis=1))
    np.testing.assert_allclose(guard.score(f), textbook, rtol=1e-9)


def test_a_precision_that_is_not_numerically_positive_definite_still_scores():
    """Fitted on degenerate features (an untrained network's all-zero units), the shrunk
    precision may fail a Cholesky factorisation; the guard still scores, as the quadratic
    form does on the directions it can weigh."""
    rng = np.random.default_rng(9)
    basis = rng.normal(size=(8, 3))
    precision = basis @ basis.T  # rank 3: positive semi-definite only
    precision[0, 0] -= 1e-9
    guard = MahalanobisGuard(rng.normal(size=(2, 8)), precision, threshold=1.0, layer="f")
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(precision)
    f = rng.normal(size=(5, 8))
    diff = f[:, None, :] - guard.means[None]
    textbook = np.einsum("nkd,de,nke->nk", diff, precision, diff).min(axis=1)
    np.testing.assert_allclose(guard.score(f), np.sqrt(np.maximum(textbook, 0)), atol=1e-6)


def test_it_saves_and_loads_exactly(guard, tmp_path):
    path = guard.save(tmp_path / "ood.npz")
    back = MahalanobisGuard.load(path)
    assert back.layer == "features" and back.threshold == guard.threshold
    f, _ = _clusters(20, 5)
    assert np.array_equal(back.score(f), guard.score(f))


def test_shrinkage_keeps_a_degenerate_feature_usable():
    f_tr, y_tr = _clusters(300, 6)
    f_tr[:, 0] = 0.0  # a dead ReLU unit: zero variance
    g = fit_features(f_tr, y_tr, _clusters(100, 7)[0], layer="f", n_classes=3)
    assert np.isfinite(g.threshold) and 0 < g.shrinkage < 1


def test_non_smears_are_generated_deterministically():
    from training.nonsmear import KINDS, generate

    for kind in KINDS:
        a = generate(kind, 3, 32, seed=1, render_size=64)
        assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
        assert np.array_equal(a, generate(kind, 3, 32, seed=1, render_size=64))
    solid = generate("solid", 2, 16, render_size=16)
    assert (solid.reshape(2, -1, 3) == solid[:, :1, 0]).all()
