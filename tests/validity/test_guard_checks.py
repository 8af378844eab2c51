"""The multi-check guard: each input check measures what it claims, the checks combine on
one scale, and the features come out of the exported graph in the same call."""

import numpy as np
import pytest

from runtime.guard import INPUT_CHECKS, FeatureSpec, MultiGuard, guard_load
from runtime.layers import input_statistics_np
from training.nonsmear import generate
from training.ood import fit_checks
from training.synth import DEMO_CLASSES
from training.synth import generate as smears

SIZE = 64
INPUT_ONLY = FeatureSpec((), input_statistics=True)


def _stats(images):
    return input_statistics_np(images)


def _fires(guard, images, check: str) -> np.ndarray:
    """Whether ``check`` passes its threshold on each image (other checks may too)."""
    names = [c.name for c in guard.checks]
    return guard.check_scores(_stats(images))[:, names.index(check)] > guard.threshold


@pytest.fixture(scope="module")
def fields():
    """In-distribution stand-ins: synthetic smear fields (training.synth)."""
    x, y = smears(DEMO_CLASSES, per_class=80, size=SIZE, seed=11)
    return x, y


@pytest.fixture(scope="module")
def input_guard(fields):
    """The input checks alone, fitted on synthetic smears (training half, validation half)."""
    x, y = fields
    f = _stats(x)
    return fit_checks(
        INPUT_ONLY, f[::2], y[::2], f[1::2], layer_sizes=[], n_classes=len(DEMO_CLASSES)
    )


def test_the_graph_layer_computes_the_numpy_statistics(fields):
    from runtime.layers import InputStatistics

    x = np.concatenate([fields[0][:6], generate("blank", 2, SIZE), generate("noise", 2, SIZE)])
    got = np.asarray(InputStatistics()(x.astype(np.float32)))
    assert got == pytest.approx(_stats(x), abs=1e-4)


def test_a_blurred_smear_scores_as_blurred(fields, input_guard):
    x = fields[0][:20]
    blurred = generate("blur", 20, SIZE, smears=x)
    focus = 0  # INPUT_STATISTICS order
    assert (_stats(blurred)[:, focus] < _stats(x)[:, focus] - 0.5).all()
    assert _fires(input_guard, blurred, "blur").all()
    assert not _fires(input_guard, x, "blur").any()


def test_a_white_field_scores_as_blank(input_guard):
    white = generate("blank", 20, SIZE)
    assert _fires(input_guard, white, "blank").all()
    assert input_guard.flag(_stats(white)).all()


def test_noise_scores_as_fine_texture_and_a_solid_colour_as_blank(input_guard):
    assert _fires(input_guard, generate("noise", 20, SIZE), "fine texture").all()
    assert _fires(input_guard, generate("solid", 20, SIZE), "blank").all()


def test_brightness_does_not_move_focus_or_dark_fraction(fields):
    x = fields[0][:10].astype(np.float64)
    dim = np.clip(x * 0.8, 0, 255)
    a, b = _stats(x), _stats(dim)
    assert b[:, 0] == pytest.approx(a[:, 0], abs=0.02)  # focus: a ratio of variances
    assert b[:, 2] == pytest.approx(a[:, 2], abs=0.05)  # dark: relative to the mean


def test_in_distribution_smears_pass(fields, input_guard):
    x, _ = smears(DEMO_CLASSES, per_class=20, size=SIZE, seed=12)
    # each check sits at about the largest of 200 validation scores: ~2 % together
    assert input_guard.flag(_stats(x)).mean() <= 0.06


def test_all_checks_together_flag_the_target_share_of_validation(fields):
    x, y = fields
    f = _stats(x)
    guard = fit_checks(
        INPUT_ONLY, f, y, f, layer_sizes=[], n_classes=len(DEMO_CLASSES), target=0.05
    )
    assert 0.02 <= guard.flag(f).mean() <= 0.05
    # one scale: 1.0 is every check's threshold, the median sits at 0
    z = guard.check_scores(f)
    assert np.median(z, axis=0) == pytest.approx(np.zeros(len(INPUT_CHECKS)), abs=1e-9)
    assert [c.name for c in guard.checks] == [name for name, _ in INPUT_CHECKS]


def test_layer_and_input_checks_share_one_feature_vector_and_save_exactly(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 300, 6
    y = rng.integers(0, 3, n)
    layer = rng.normal(0, 1, (n, d)) + 4 * np.eye(3, d)[y]
    stats = np.c_[rng.normal(-0.4, 0.1, n), rng.normal(-0.8, 0.05, n), rng.normal(-1, 0.2, n)]
    f = np.c_[layer, stats]
    spec = FeatureSpec(("dense",), input_statistics=True)
    guard = fit_checks(spec, f[:200], y[:200], f[200:], layer_sizes=[d], n_classes=3)
    assert guard.checks[0].name == "layer dense"
    far = f[:5].copy()
    far[:, :d] += 30  # far from every class in the layer, ordinary input statistics
    assert guard.reasons(far) == ["layer dense"] * 5
    back = guard_load(guard.save(tmp_path / "ood.npz"), "multi-check")
    assert isinstance(back, MultiGuard) and back.spec == spec
    assert np.array_equal(back.score(f), guard.score(f))
    with pytest.raises(ValueError, match="expects 9 features"):
        guard.score(f[:, :-1])


@pytest.mark.slow
def test_the_exported_graph_outputs_the_guard_features_in_one_call(tmp_path):
    """Packaging puts pooled block features, penultimate features and input statistics
    into the ONNX graph's second output, equal to Keras's; the predictor scores them."""
    import keras

    from runtime.artifact import write_artifact
    from runtime.predictor import Predictor
    from tests.helpers import manifest_fields, verification_batch
    from training.ood import fit_guard

    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for i in (1, 2, 3, 4):
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu", name="dense2")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    train, labels = smears(DEMO_CLASSES, per_class=12, size=32, seed=3)
    val, _ = smears(DEMO_CLASSES, per_class=6, size=32, seed=4)
    guard = fit_guard(model, train, labels, val, 5, stain_augment=False)
    assert guard.spec.layers == ("bn2", "bn3", "bn4", "dense2")
    folder, manifest = write_artifact(
        model,
        tmp_path,
        manifest_fields=manifest_fields(input_size=32, heatmap_layer="conv4"),
        verification=verification_batch(32),
        guard=guard,
    )
    assert manifest.ood is not None and manifest.onnx is not None
    assert manifest.ood["method"] == "multi-check"
    assert manifest.onnx["verification"]["feature_rel_diff"] < 1e-4
    predictor = Predictor.load(folder)
    outputs = [o.name for o in predictor.session.get_outputs()]
    assert outputs == ["probabilities", "features"]
    images = np.concatenate([val[:4], generate("blank", 2, 32)])
    (features,) = [predictor.session.run(["features"], {"image": images})[0]]
    assert features.shape == (6, 4 + 4 + 4 + 8 + 3)
    assert features[:, -3:] == pytest.approx(_stats(images), abs=1e-4)
    _, scores = predictor.scored(images)
    assert scores == pytest.approx(guard.score(features), rel=1e-5)
    answers, _ = predictor.predict(list(images))
    assert [a.out_of_scope for a in answers[-2:]] == [True, True]  # the blank fields


def test_a_singular_precision_still_scores_as_its_quadratic_form():
    """Dead units can leave a layer's precision singular to rounding: no Cholesky factor,
    but the scores are the same quadratic form."""
    from runtime.guard import _whitened

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3))
    precision = a @ a.T  # rank 3 of 4: positive semi-definite, not definite
    means = rng.normal(size=(2, 4))
    f = rng.normal(size=(5, 4))
    want = np.sqrt(
        np.min([np.einsum("nd,de,ne->n", f - m, precision, f - m) for m in means], axis=0)
    )
    assert _whitened(means, precision, 1.0).score(f) == pytest.approx(want, abs=1e-6)
