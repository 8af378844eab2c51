"""Stain normalisation layers (Reinhard, Macenko, grayscale): numpy references, saving, ONNX."""

import keras
import numpy as np
import pytest

from runtime import layers
from training import stain
from training.architectures import build_model, heatmap_layer


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (6, 16, 16, 3)).astype(np.float32)
    base[3:] = base[3:] * 0.5 + np.array([120, 40, 90])  # a second, differently tinted batch
    return np.clip(base, 0, 255).astype(np.uint8)


def test_lab_round_trip_is_near_identity(images):
    assert np.abs(stain.lab_to_rgb_np(stain.rgb_to_lab_np(images)) - images).max() < 1e-6


def test_the_layer_matches_the_numpy_reference(images):
    ref = stain.reinhard_reference(images[:3])
    layer = layers.ReinhardNormalization(ref["mean"], ref["std"])
    got = np.asarray(layer(images.astype(np.float32)))
    want = stain.reinhard_normalize_np(images, ref["mean"], ref["std"])
    assert np.abs(got - want).max() < 0.05


def test_normalised_images_take_the_reference_statistics(images):
    ref = stain.reinhard_reference(images[:3])
    out = stain.reinhard_normalize_np(images[3:], ref["mean"], ref["std"])
    mean, std = stain.reinhard_stats_np(out)
    # clipping to 0-255 moves them a little; the tinted batch lands on the reference
    assert np.abs(mean - ref["mean"]).max() < 0.02
    assert np.abs(std - ref["std"]).max() < 0.02


def test_a_model_with_the_layer_survives_save_and_load(images, tmp_path):
    ref = stain.reinhard_reference(images)
    model = build_model(
        "cml1",
        3,
        32,
        normalizer=layers.ReinhardNormalization(ref["mean"], ref["std"], name="stain_normalize"),
    )
    assert model.layers[1].name == "stain_normalize"
    assert heatmap_layer(model) == heatmap_layer(build_model("cml1", 3, 32))
    x = np.asarray([np.resize(img, (32, 32, 3)) for img in images], np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert loaded.get_layer("stain_normalize").target_mean == pytest.approx(ref["mean"])
    assert np.allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)


def _smear_like(seed: int, h_scale: float = 1.0) -> np.ndarray:
    """A field of H-stained 'nuclei' and E-stained background at known stain amounts."""
    rng = np.random.default_rng(seed)
    hed = np.zeros((24, 24, 3))
    hed[..., 1] = rng.uniform(0.1, 0.3, (24, 24))  # eosin everywhere
    yy, xx = np.mgrid[:24, :24]
    for _ in range(4):
        cy, cx = rng.integers(4, 20, 2)
        hed[..., 0] += h_scale * 0.9 * ((yy - cy) ** 2 + (xx - cx) ** 2 < 12)
    hed += rng.normal(0, 0.01, hed.shape)
    return np.clip(stain.hed_to_rgb_np(hed), 0, 255).astype(np.uint8)


def test_macenko_layer_matches_the_numpy_reference_and_evens_out_staining(tmp_path):
    ref_images = np.stack([_smear_like(s) for s in range(4)])
    ref = stain.macenko_reference(ref_images)
    layer = layers.MacenkoNormalization(ref["stains"], ref["max_concentrations"])
    pale = np.stack([_smear_like(10, h_scale=0.5), _smear_like(11, h_scale=0.5)])
    got = np.asarray(layer(pale.astype(np.float32)))
    want = np.stack([stain.macenko_normalize_np(img, **ref) for img in pale])
    assert np.abs(got - want).max() < 0.5
    # the pale (half-haematoxylin) fields come out as dark as the reference
    h = lambda x: np.percentile(stain.rgb_to_hed_np(x)[..., 0], 99)  # noqa: E731
    assert abs(h(got) - h(ref_images)) < 0.5 * abs(h(pale) - h(ref_images))
    blank = np.full((1, 24, 24, 3), 250, np.float32)  # no stain: passed through untouched
    assert np.array_equal(np.asarray(layer(blank)), blank)
    model = keras.Sequential([keras.Input((24, 24, 3)), layer])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert np.allclose(np.asarray(loaded(pale.astype(np.float32))), got, atol=1e-4)


def test_macenko_ignores_black_fill_when_estimating_stains():
    img = _smear_like(3)
    framed = img.copy()
    framed[:, :8] = 0  # a third of the field is black, as after an affine augmentation
    fitted, framed_fitted = stain.macenko_stains_np(img[:, 8:]), stain.macenko_stains_np(framed)
    assert fitted is not None and framed_fitted is not None  # both have enough stained pixels
    (own, _), (framed_own, _) = fitted, framed_fitted
    assert np.abs(own - framed_own).max() < 0.05


def test_macenko_cannot_be_served_because_its_layer_does_not_convert_to_onnx(tmp_path):
    # The evidence behind refusing --stain-normalize macenko: the analysis workers run the
    # ONNX graph, tf2onnx has no conversion for the layer's eigen-decomposition and SVD
    # (it leaves the TensorFlow ops in the graph), and ONNX Runtime refuses that graph.
    import onnx

    from runtime.artifact import ArtifactError
    from runtime.export import onnx_convert, onnx_session

    ref = stain.macenko_reference(np.stack([_smear_like(s) for s in range(2)]))
    layer = layers.MacenkoNormalization(ref["stains"], ref["max_concentrations"])
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model(np.zeros((1, 24, 24, 3), np.float32))
    graph = onnx_convert(model, 24, None)
    ops = set()
    pending = list(onnx.load_from_string(graph).graph.node)
    while pending:  # the layer's ops sit inside Loop/If subgraphs
        node = pending.pop()
        ops.add(node.op_type)
        pending.extend(n for a in node.attribute if a.g is not None for n in a.g.node)
    assert {"SelfAdjointEigV2", "Svd"} <= ops
    (tmp_path / "m.onnx").write_bytes(graph)
    with pytest.raises(ArtifactError):
        onnx_session(tmp_path / "m.onnx")


def test_the_grayscale_layer_hides_colour_and_serves_through_onnx(images, tmp_path):
    import tensorflow as tf

    from runtime.export import keras_outputs, onnx_convert, onnx_session, onnx_verify

    layer = layers.Grayscale(name="stain_normalize")
    out = np.asarray(layer(images.astype(np.float32)))
    assert np.allclose(out, np.asarray(stain.grayscale(tf.constant(images, tf.float32))), atol=1e-3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    images = np.tile(images, (1, 2, 2, 1))  # CML-1 takes 32 px at the least
    out = np.asarray(layer(images.astype(np.float32)))
    model = build_model("cml1", 3, 32, None, normalizer=layer)
    # an image and its grayscale copy get the same answer: colour never reaches the network
    grey = np.round(out).astype(np.uint8)
    assert np.allclose(model(grey.astype(np.float32)), model(images.astype(np.float32)), atol=1e-3)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert loaded.get_layer("stain_normalize").__class__ is layers.Grayscale
    (tmp_path / "m.onnx").write_bytes(onnx_convert(loaded, 32, "dense2"))
    agreement = onnx_verify(
        onnx_session(tmp_path / "m.onnx"), images, keras_outputs(loaded, images, "dense2")
    )
    assert agreement  # raises above when the graph differs by more than 1e-4
