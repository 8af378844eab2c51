"""The int8 variant: kept when it keeps the accuracy, refused with the reason when not."""

import numpy as np
import pytest

from runtime.artifact import INT8_FILE, read_manifest
from runtime.predictor import Predictor
from tests.helpers import colour_images, package, trained_tiny_model
from training.quantize import MAX_ACCURACY_DROP, MIN_AGREEMENT, int8_variant, scales_fold


def test_an_int8_variant_within_the_limits_is_packaged_with_its_figures(int8_artifact):
    entry = read_manifest(int8_artifact).int8
    assert (
        entry is not None
        and entry["status"] == "accepted"
        and (int8_artifact / INT8_FILE).is_file()
    )
    assert entry["fp32_accuracy"] - entry["accuracy"] <= MAX_ACCURACY_DROP
    assert entry["agreement"] >= MIN_AGREEMENT and entry["test_images"] == 100
    assert entry["calibration"]["images"] == 64
    fp32, int8 = Predictor.load(int8_artifact), Predictor.load(int8_artifact, variant="int8")
    images, labels = colour_images(20, seed=7)
    assert (int8.probabilities(images).argmax(1) == labels).all()
    assert (fp32.probabilities(images).argmax(1) == labels).all()


def test_a_badly_calibrated_int8_variant_is_refused_and_not_written(tmp_path):
    test_x, test_y = colour_images(100, seed=1)

    def finish(folder, values):
        # Calibrated on near-black frames: real images' activations fall far outside
        # the ranges, and the variant's answers collapse.
        values["int8"] = int8_variant(
            folder,
            values["onnx"],
            calibration=np.full((16, 32, 32, 3), 1, np.uint8),
            calibration_source="near-black frames (deliberately wrong)",
            test_images=test_x,
            test_labels=test_y,
        )

    folder = package(tmp_path, version="bad", seed=3, model=trained_tiny_model(), finish=finish)
    entry = read_manifest(folder).int8
    assert entry is not None and entry["status"] == "refused"
    assert "points below fp32's" in entry["reason"] and "agrees with fp32's" in entry["reason"]
    assert entry["fp32_accuracy"] == 1.0 and entry["accuracy"] < 0.9
    assert not (folder / INT8_FILE).exists()
    with pytest.raises(Exception, match="no accepted int8 variant"):
        Predictor.load(folder, variant="int8")


def test_batchnorm_after_relu_is_folded_exactly_before_quantisation(tmp_path):
    """CML-1's Conv -> ReLU -> BatchNorm -> MaxPool blocks: the BatchNorm's scale goes into
    the layer before the ReLU and its shift past the pool (#13: quantised at full
    resolution they ate int8's gain), and the graph answers as before. A block whose
    scale is negative in a channel keeps its BatchNorm: there the fold would be wrong."""
    import keras
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from runtime.export import onnx_convert
    from training.architectures import build_cml1

    keras.utils.set_random_seed(0)
    model = build_cml1(5, size=32)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # as trained: nothing is 0 or 1
            gamma, beta, mean, var = (np.asarray(w) for w in layer.get_weights())
            gamma = rng.uniform(0.5, 2.0, gamma.shape)
            if layer.name == "bn3":
                gamma[0] = -0.7
            layer.set_weights(
                [gamma, rng.normal(0, 0.5, beta.shape), rng.normal(0, 0.1, mean.shape),
                 rng.uniform(0.5, 2.0, var.shape)]
            )  # fmt: skip
    (tmp_path / "fp32.onnx").write_bytes(onnx_convert(model, 32, None))
    quant_pre_process(str(tmp_path / "fp32.onnx"), str(tmp_path / "prepared.onnx"))
    graph = onnx.load(str(tmp_path / "prepared.onnx"))

    def ops(kind: str) -> int:
        return sum(node.op_type == kind for node in graph.graph.node)

    muls = ops("Mul")
    assert scales_fold(graph) == 10  # 5 of 6 BatchNorm scales, 5 shifts past their pools
    assert ops("Mul") == muls - 5  # bn3's scale and the input's 1/255 stay
    onnx.checker.check_model(graph, full_check=True)
    (tmp_path / "folded.onnx").write_bytes(graph.SerializeToString())
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    before, after = (
        ort.InferenceSession(str(tmp_path / f"{name}.onnx")).run(None, {"image": images})[0]
        for name in ("prepared", "folded")
    )
    np.testing.assert_allclose(after, before, atol=1e-5)
