"""The multi-check guard: each input check measures what it claims, the checks combine on
one scale, and the features come out of the exported graph in the same call."""

import numpy as np
import pytest

from runtime.guard import (
    BLANK_MAX_STRUCTURE,
    INPUT_CHECKS,
    INPUT_STATISTICS,
    LEGACY_INPUT_STATISTICS,
    FeatureSpec,
    MultiGuard,
    guard_load,
)
from runtime.layers import LUMA, input_statistics_np, structure_share_np
from training.nonsmear import generate
from training.ood import fit_checks
from training.synth import DEMO_CLASSES
from training.synth import generate as smears

SIZE = 64
INPUT_ONLY = FeatureSpec(())
FOCUS, CONTRAST, STRUCTURE = (INPUT_STATISTICS.index(n) for n in ("focus", "contrast", "structure"))


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
    assert (_stats(blurred)[:, FOCUS] < _stats(x)[:, FOCUS] - 0.5).all()
    assert _fires(input_guard, blurred, "blur").all()
    assert not _fires(input_guard, x, "blur").any()


def test_a_white_field_scores_as_blank(input_guard):
    white = generate("blank", 20, SIZE)
    assert _fires(input_guard, white, "blank").all()
    assert input_guard.flag(_stats(white)).all()


def test_structure_is_the_share_of_the_field_on_a_cell_scale_edge():
    """A dark square of side a (in 2-pixel blocks at 128 px) on a white field: central
    differences mark the block rows and columns on either side of its outline, the four
    diagonal corner blocks excepted: 8a - 4 of the 62 x 62 interior blocks."""
    field = np.full((1, 128, 128, 3), 240.0)
    field[:, 40:80, 30:70] = 60.0  # a = 20 blocks
    share = structure_share_np(field @ np.asarray(LUMA))
    assert share[0] == pytest.approx((8 * 20 - 4) / 62**2)
    assert _stats(field)[0, STRUCTURE] == pytest.approx(np.log10(share[0] + 1e-3))


def test_structure_ignores_noise_vignetting_and_dust_smaller_than_a_cell():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128] / 127 - 0.5
    # the strongest lamp falloff and sensor noise that generated empty fields have
    lamp = 235 * (1 - 0.5 * (xx**2 + yy**2))  # corners at 75 % of the centre
    field = lamp[None, :, :, None] + rng.normal(0, 2, (1, 128, 128, 3))
    assert structure_share_np(field @ np.asarray(LUMA))[0] < 0.005
    specks = field.copy()
    for y, x in rng.integers(10, 118, (5, 2)):
        specks[:, y - 1 : y + 2, x - 1 : x + 2] = 120.0  # 3 px across: dust, not a cell
    assert structure_share_np(specks @ np.asarray(LUMA))[0] < BLANK_MAX_STRUCTURE


def test_colour_does_not_move_structure(fields):
    """In luma and relative to the mean: grayscale keeps it, a hue rotation and a dimmer
    lamp barely move it. HED jitter changes how much stain there is, and a brighter lamp
    clips pale outlines away, so those move it more, but no shift of the robustness table
    takes a smear down to blank's threshold."""
    from training.robustness import SHIFTS, apply_shift

    x = fields[0][:20]
    base = _stats(x)[:, STRUCTURE]
    for shift in SHIFTS:
        moved = _stats(apply_shift(x, shift))[:, STRUCTURE]
        if shift.kind in ("grayscale", "hue") or (
            shift.kind == "brightness" and shift.strength < 1
        ):
            assert moved == pytest.approx(base, abs=0.02), shift.label
        assert (moved > np.log10(BLANK_MAX_STRUCTURE)).all(), shift.label


def test_blank_keeps_its_fixed_threshold_whatever_the_validation_images(fields):
    """Validation images that look empty (a colour jitter can wash a pale smear out) would
    put a fitted ``blank`` threshold beyond empty fields, and clean ones alone would put
    it among smears a brighter lamp has paled: it stays at a field with
    BLANK_MAX_STRUCTURE of cell-scale edges, and the images it flags count."""
    x, y = fields
    fixed = -np.log10(BLANK_MAX_STRUCTURE + 1e-3)
    washed = generate("blank", 8, SIZE, seed=5)  # 5 % of the validation set
    for val in (x[1::2], np.concatenate([x[1::2], washed])):
        guard = fit_checks(
            INPUT_ONLY,
            _stats(x[::2]),
            y[::2],
            _stats(val),
            layer_sizes=[],
            n_classes=len(DEMO_CLASSES),
            target=0.06,
        )
        (blank,) = [c for c in guard.checks if c.name == "blank"]
        assert blank.threshold == pytest.approx(fixed)
        assert _fires(guard, generate("blank", 40, SIZE, seed=6), "blank").all()
        assert not _fires(guard, x[1::2], "blank").any()
        assert guard.flag(_stats(val)).mean() <= 0.06  # the washed-out ones included


def test_a_fixed_threshold_that_most_validation_images_pass_is_fitted_instead(fields):
    """Validation fields with little structure (here empty ones) are not what blank's
    fixed threshold was set for: the check is fitted like the others."""
    _, y = fields
    empty = _stats(generate("blank", len(y), SIZE, seed=7))
    guard = fit_checks(INPUT_ONLY, empty, y, empty, layer_sizes=[], n_classes=len(DEMO_CLASSES))
    (blank,) = [c for c in guard.checks if c.name == "blank"]
    assert blank.threshold != pytest.approx(-np.log10(BLANK_MAX_STRUCTURE + 1e-3))
    assert blank.threshold > blank.centre
    assert guard.flag(empty).mean() <= 0.01


def test_noise_scores_as_fine_texture_and_a_solid_colour_as_blank(input_guard):
    assert _fires(input_guard, generate("noise", 20, SIZE), "fine texture").all()
    assert _fires(input_guard, generate("solid", 20, SIZE), "blank").all()


def test_brightness_does_not_move_focus_or_structure(fields):
    x = fields[0][:10].astype(np.float64)
    dim = np.clip(x * 0.8, 0, 255)
    a, b = _stats(x), _stats(dim)
    assert b[:, FOCUS] == pytest.approx(a[:, FOCUS], abs=0.02)  # a ratio of variances
    assert b[:, STRUCTURE] == pytest.approx(a[:, STRUCTURE], abs=0.02)  # relative to the mean


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
    assert [c.name for c in guard.checks] == [c.name for c in INPUT_CHECKS]


def test_layer_and_input_checks_share_one_feature_vector_and_save_exactly(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 300, 6
    y = rng.integers(0, 3, n)
    layer = rng.normal(0, 1, (n, d)) + 4 * np.eye(3, d)[y]
    stats = np.c_[rng.normal(-0.4, 0.1, n), rng.normal(-0.8, 0.05, n), rng.normal(-0.2, 0.05, n)]
    f = np.c_[layer, stats]
    spec = FeatureSpec(("dense",))
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
    # the worker names the check that scored each flagged image highest, as offline work does
    assert [a.ood_reason or None for a in answers] == guard.reasons(features)


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


def test_a_guard_saved_before_the_structure_statistic_loads_and_scores_as_it_did(tmp_path):
    """Guards packaged before issue #14's ``structure`` flagged their input statistics
    with a boolean and read focus, contrast and dark: they still do, graph included."""
    from runtime.layers import InputStatistics

    legacy = FeatureSpec((), LEGACY_INPUT_STATISTICS)
    x, y = smears(DEMO_CLASSES, per_class=10, size=SIZE, seed=13)
    f = input_statistics_np(x, LEGACY_INPUT_STATISTICS)
    guard = fit_checks(legacy, f, y, f, layer_sizes=[], n_classes=len(DEMO_CLASSES))
    with np.load(guard.save(tmp_path / "new.npz")) as z:
        old = {k: z[k] for k in z.files if k != "statistics"}
    with (tmp_path / "old.npz").open("wb") as fh:
        np.savez(fh, input_statistics=np.array(True), **old)
    back = guard_load(tmp_path / "old.npz", "multi-check")
    assert back.spec == legacy
    assert np.array_equal(back.score(f), guard.score(f))
    graph = np.asarray(InputStatistics(back.spec.input_statistics)(x.astype(np.float32)))
    # float32 against float64 can put a pixel on the other side of the dark bound
    assert graph == pytest.approx(f, abs=5e-3)
