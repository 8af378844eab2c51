"""The ONNX graph of a packaged model: converted from its Keras model, and verified equal.

The analysis workers serve ONNX Runtime, which is about twice as fast as TensorFlow on
these CPUs and needs no TensorFlow at all; Grad-CAM still runs on the Keras model. So
every artifact carries both, and this module proves they are the same model: the
graph's answers on a verification batch of real preprocessed images must match the
Keras model's to 1e-4 in every probability and in every top-1 label.

Conversion needs TensorFlow and tf2onnx (packaging, and import of an artifact that
has no graph yet); verification needs only ONNX Runtime and numpy.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifact import ArtifactError
from runtime.guard import FeatureSpec
from runtime.rewrites import scales_fold

__all__ = [
    "OPSET",
    "PROBABILITY_TOLERANCE",
    "KerasOutputs",
    "freed_memory_release",
    "keras_outputs",
    "onnx_convert",
    "onnx_outputs",
    "onnx_session",
    "onnx_verify",
    "outputs_compare",
]

#: ONNX opset of the exported graphs; tf2onnx 1.17 converts every layer the
#: architectures use at this opset, with probabilities equal to 1e-7.
OPSET = 17
#: The largest difference of any probability on the verification batch that still
#: counts as the same model.
PROBABILITY_TOLERANCE = 1e-4
#: The features feed only the out-of-scope guard; relative to their largest magnitude.
#: Pooled from early blocks as well as the last (the multi-check guard), they carry the
#: two runtimes' float32 rounding through fewer normalising layers than the
#: probabilities: 1.7e-4 (MobileNet) and 5.7e-4 (ResNet-50) at 224 px with untrained
#: weights, 5e-7 for CML-1, while another model's features differ by order 1.
FEATURE_TOLERANCE = 2e-3
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "features")


@dataclass(frozen=True)
class KerasOutputs:
    """What a model answers for a uint8 batch: probabilities, and features for the guard."""

    probabilities: np.ndarray
    features: np.ndarray | None


def _network(model, features: FeatureSpec | str | None):
    """The model, or the guard's two-output graph; a layer name is a one-layer guard's."""
    from runtime.guard import feature_network

    if isinstance(features, str):
        features = FeatureSpec((features,), input_statistics=())
    return model if features is None else feature_network(model, features)


def keras_outputs(model, images: np.ndarray, features: FeatureSpec | str | None) -> KerasOutputs:
    """The Keras model's own answers for ``images`` (uint8, N x size x size x 3)."""
    net = _network(model, features)
    out = net(np.asarray(images, np.float32), training=False)
    if features is None:
        return KerasOutputs(np.asarray(out, np.float32), None)
    feats, probs = out
    return KerasOutputs(np.asarray(probs, np.float32), np.asarray(feats, np.float32))


def onnx_convert(
    model, size: int, features: FeatureSpec | str | None, *, fold: bool = True
) -> bytes:
    """The serialised ONNX graph of ``model``: raw uint8 RGB in (any batch size), the
    probabilities out, and the guard's features (pooled layer outputs and input
    statistics, as ``features`` says) as a second output when it has a guard.

    The cast to float happens inside the graph, so the worker hands it the same uint8
    pixels that ``runtime.preprocess.load_for_model`` made, exactly as Keras gets them.
    With ``fold`` (the default; off only to look at the graph as converted), BatchNorms
    after a ReLU are folded (``runtime.rewrites.scales_fold``): the same model in real
    arithmetic, and ~17 % faster for CML-1 in ONNX Runtime.
    """
    import tensorflow as tf
    import tf2onnx
    from onnx import helper

    net = _network(model, features)

    def forward(image):
        out = net(tf.cast(image, tf.float32), training=False)
        return (out[1], out[0]) if features is not None else (out,)

    signature = [tf.TensorSpec([None, size, size, 3], tf.uint8, name=INPUT_NAME)]
    function = tf.function(forward, input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    # Stable output names, whatever tf2onnx called the function's results.
    graph = proto.graph
    converted = list(graph.output)
    del graph.output[:]
    for value, name in zip(converted, OUTPUT_NAMES, strict=False):
        graph.node.append(helper.make_node("Identity", [value.name], [name]))
        value.name = name
        graph.output.append(value)
    if fold:
        scales_fold(proto)
    return proto.SerializeToString()


def onnx_session(path: str | Path, *, threads: int = 0):
    """An ONNX Runtime session on the CPU, with every graph optimisation on.

    The transient copies that optimising the graph makes at load are handed back to the
    system: a ResNet-50 session then holds ~100 MB instead of ~250 MB. ORT's arena, which
    keeps runs fast (without it CML-1 ran at a third to a half of its speed here), stays
    reserved at the largest batch run: the predictor bounds that with its batch size.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # warnings about unused initialisers say nothing here
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types for a bad file
        raise ArtifactError(
            f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})"
        ) from exc
    freed_memory_release()
    return session


def freed_memory_release() -> None:
    """Return the heap's free pages to the system (glibc keeps them otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        return


def onnx_outputs(session, images: np.ndarray) -> KerasOutputs:
    """The graph's answers for a uint8 batch, in the same shape as :func:`keras_outputs`."""
    names = [o.name for o in session.get_outputs()]
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(images)}
    out = session.run(None, feed)
    by_name = dict(zip(names, out, strict=True))
    return KerasOutputs(
        np.asarray(by_name.get("probabilities", out[0]), np.float32),
        None if "features" not in by_name else np.asarray(by_name["features"], np.float32),
    )


def onnx_verify(session, images: np.ndarray, expected: KerasOutputs) -> dict[str, Any]:
    """Refuse a graph that does not answer as the Keras model did on the verification batch.

    Returns the measured agreement for the manifest; raises :class:`ArtifactError` with
    the reason (shape, largest probability difference, or how many top-1 labels differ).
    """
    return outputs_compare(onnx_outputs(session, images), expected)


def outputs_compare(got: KerasOutputs, expected: KerasOutputs) -> dict[str, Any]:
    """:func:`onnx_verify` on answers the graph already gave."""
    want = np.asarray(expected.probabilities, np.float32)
    if got.probabilities.shape != want.shape:
        raise ArtifactError(
            f"the ONNX graph answers with shape {got.probabilities.shape} on the verification "
            f"images, the Keras model with {want.shape}: it is not the same model"
        )
    differs = int((got.probabilities.argmax(axis=1) != want.argmax(axis=1)).sum())
    max_diff = float(np.abs(got.probabilities - want).max()) if len(want) else 0.0
    if max_diff > PROBABILITY_TOLERANCE or not np.isfinite(max_diff):
        raise ArtifactError(
            f"the ONNX graph's probabilities differ from the Keras model's by up to "
            f"{max_diff:.2g} on the {len(want)} verification images (the limit is "
            f"{PROBABILITY_TOLERANCE:g}), and its top-1 label differs on {differs}: it is "
            "not the same model"
        )
    if differs:
        raise ArtifactError(
            f"the ONNX graph's top-1 label differs from the Keras model's on {differs} of "
            f"the {len(want)} verification images: it is not the same model"
        )
    feature_diff = None
    if expected.features is not None:
        if got.features is None or got.features.shape != expected.features.shape:
            raise ArtifactError(
                "the ONNX graph does not output the out-of-scope guard's features as the "
                "Keras model does"
            )
        scale = max(float(np.abs(expected.features).max()), 1e-6)
        feature_diff = float(np.abs(got.features - expected.features).max()) / scale
        if feature_diff > FEATURE_TOLERANCE:
            raise ArtifactError(
                f"the ONNX graph's guard features differ from the Keras model's by "
                f"{feature_diff:.2g} of their scale (the limit is {FEATURE_TOLERANCE:g}): "
                "it is not the same model"
            )
    return {
        "images": len(want),
        "max_abs_diff": max_diff,
        "top1_agreement": 1.0,
        "feature_rel_diff": feature_diff,
    }
