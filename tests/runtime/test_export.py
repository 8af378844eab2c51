"""The ONNX graph an artifact carries is its Keras model's twin, or it is refused."""

import json
import shutil

import numpy as np
import onnx
import pytest

from runtime.artifact import (
    ONNX_FILE,
    ArtifactError,
    load_packaged,
    read_manifest,
    sha256_file,
)
from runtime.export import (
    PROBABILITY_TOLERANCE,
    KerasOutputs,
    keras_outputs,
    onnx_session,
    onnx_verify,
)
from runtime.predictor import Predictor
from tests.helpers import smear_paths


def rehash(folder) -> None:
    """Write the graph's new hash into the manifest: a tamperer who knows the format."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["onnx"]["sha256"] = sha256_file(folder / ONNX_FILE)
    path.write_text(json.dumps(manifest))


def perturb_weights(folder, scale: float) -> None:
    graph = onnx.load(folder / ONNX_FILE)
    for tensor in graph.graph.initializer:
        values = onnx.numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.ndim == 2:  # the dense layer's kernel
            noisy = values + np.random.default_rng(0).normal(0, scale, values.shape)
            tensor.CopyFrom(onnx.numpy_helper.from_array(noisy.astype(np.float32), tensor.name))
    onnx.save(graph, folder / ONNX_FILE)


def test_the_packaged_graph_answers_real_smears_as_the_keras_model_does(artifacts):
    manifest = read_manifest(artifacts["v1"])
    assert manifest.onnx is not None
    check = manifest.onnx["verification"]
    assert check["images"] == 8 and check["max_abs_diff"] <= PROBABILITY_TOLERANCE
    assert "BCCD" in check["source"]
    model, _ = load_packaged(artifacts["v1"])
    predictor = Predictor.load(artifacts["v1"])
    # Smears the verification batch did not hold.
    images = np.stack([predictor.prepare(p.read_bytes()) for p in smear_paths(12)[8:]])
    keras_probs = keras_outputs(model, images, None).probabilities
    assert np.abs(predictor.probabilities(images) - keras_probs).max() <= PROBABILITY_TOLERANCE


def test_a_tampered_graph_is_refused_for_its_answers_even_with_a_matching_hash(
    artifact_copy,
):
    folder = artifact_copy("v1")
    perturb_weights(folder, scale=0.5)
    rehash(folder)
    with pytest.raises(ArtifactError, match="not the same model"):
        Predictor.load(folder)


def test_a_graph_changed_behind_the_manifest_is_refused_by_its_hash(artifact_copy):
    folder = artifact_copy("v1")
    perturb_weights(folder, scale=1e-9)
    with pytest.raises(ArtifactError, match="hash does not match"):
        Predictor.load(folder)


def test_another_models_graph_is_refused(artifact_copy, artifacts):
    folder = artifact_copy("v1")
    shutil.copyfile(artifacts["v2"] / ONNX_FILE, folder / ONNX_FILE)
    rehash(folder)
    with pytest.raises(ArtifactError, match="not the same model"):
        Predictor.load(folder)


def test_verification_names_a_top1_difference_even_within_the_tolerance(artifacts):
    session = onnx_session(artifacts["v1"] / ONNX_FILE)
    images = np.zeros((2, 32, 32, 3), np.uint8)  # black: every class at exactly 1/5
    probs = session.run(None, {"image": images})[0]
    assert np.allclose(probs, 0.2) and (probs.argmax(axis=1) == 0).all()
    # The recorded answer is within 1e-5 of the graph's but puts another class on top.
    recorded = probs.copy()
    recorded[:, 1] += 1e-5
    with pytest.raises(ArtifactError, match=r"top-1 label differs .* on 2 of the 2"):
        onnx_verify(session, images, KerasOutputs(recorded, None))


def test_an_int8_variant_is_refused_when_none_was_accepted(artifacts):
    with pytest.raises(ArtifactError, match="no accepted int8 variant"):
        Predictor.load(artifacts["v1"], variant="int8")


def test_guard_features_from_another_model_are_refused_but_float_rounding_is_not():
    """Probabilities equal, features not: a graph whose guard would score other features
    is not the same model; differences of the size two runtimes' rounding makes are."""
    from runtime.export import FEATURE_TOLERANCE, outputs_compare

    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(4), size=8).astype(np.float32)
    features = rng.normal(size=(8, 32)).astype(np.float32)
    expected = KerasOutputs(probabilities, features)
    scale = float(np.abs(features).max())
    rounding = features + np.float32(scale * 5.7e-4)  # ResNet-50's, measured
    assert outputs_compare(KerasOutputs(probabilities, rounding), expected)["images"] == 8
    other = features + np.float32(scale * 10 * FEATURE_TOLERANCE)
    with pytest.raises(ArtifactError, match="guard features differ"):
        outputs_compare(KerasOutputs(probabilities, other), expected)
