"""The int8 variant: kept when it keeps the accuracy, refused with the reason when not."""

import numpy as np
import pytest

from runtime.artifact import INT8_FILE, read_manifest
from runtime.predictor import Predictor
from runtime.rewrites import scales_fold
from tests.helpers import colour_images, package, trained_tiny_model
from training.quantize import MAX_ACCURACY_DROP, MIN_AGREEMENT, int8_variant


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
    (tmp_path / "fp32.onnx").write_bytes(onnx_convert(model, 32, None, fold=False))
    quant_pre_process(str(tmp_path / "fp32.onnx"), str(tmp_path / "prepared.onnx"))
    graph = onnx.load(str(tmp_path / "prepared.onnx"))
    # What packaging stores is folded already: quantising it finds nothing left to fold.
    assert scales_fold(onnx.load_from_string(onnx_convert(model, 32, None))) == 0

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


def test_a_guard_tap_on_a_batchnorm_takes_its_shift_after_the_mean(tmp_path):
    """A guard reading bn2..bn4 gave each BatchNorm's shift a second user, the tap's mean,
    and kept the shift at full resolution with a copy out of ONNX Runtime's blocked layout
    and back around it (CML-1 224 px: a third of a millisecond for bn2 alone). A mean over
    the map commutes with a constant per channel as a max does: the shift moves past the
    pool and past the tap, and features and probabilities stay as they were."""
    import keras
    import onnx
    import onnxruntime as ort

    from runtime.export import onnx_convert
    from runtime.guard import FeatureSpec
    from runtime.rewrites import graph_index
    from training.architectures import build_cml1

    keras.utils.set_random_seed(0)
    model = build_cml1(5, size=32)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = (np.asarray(w) for w in layer.get_weights())
            layer.set_weights(
                [rng.uniform(0.5, 2.0, gamma.shape), rng.normal(0, 0.5, beta.shape),
                 rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)]
            )  # fmt: skip
    spec = FeatureSpec(("bn2", "bn3", "bn4"), input_statistics=())
    plain = onnx.load_from_string(onnx_convert(model, 32, spec, fold=False))
    folded = onnx.load_from_string(onnx_convert(model, 32, spec))
    _, producer, _ = graph_index(folded.graph)
    taps = [n for n in folded.graph.node if n.op_type == "GlobalAveragePool"]
    assert len(taps) == 3 and not any(producer[t.input[0]].op_type == "Add" for t in taps)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    before, after = (
        ort.InferenceSession(m.SerializeToString()).run(None, {"image": images})
        for m in (plain, folded)
    )
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_the_guard_features_the_first_block_and_the_head_stay_in_float(tmp_path):
    """Left in float: the guard's features off the path to the probabilities (the pixel
    statistics and the concatenation, not the pools of quantised layers), the first
    convolution on RGB with what follows it up to the next convolution, and the output
    layer with its softmax (quantised, the probabilities come in steps of 1/255).
    Quantised whole, one uint8 scale for the concatenated features moved them by a large
    share of their scale, so the guard would score int8's images apart."""
    import keras
    import onnx
    import onnxruntime as ort

    from runtime.export import onnx_convert
    from runtime.guard import FeatureSpec
    from training.architectures import build_cml1
    from training.quantize import fp32_nodes, int8_convert

    keras.utils.set_random_seed(0)
    model = build_cml1(5, size=32)
    spec = FeatureSpec(("bn2", "bn3", "bn4"))
    (tmp_path / "fp32.onnx").write_bytes(onnx_convert(model, 32, spec))
    graph = onnx.load(str(tmp_path / "fp32.onnx"))
    kept = {n.name: n.op_type for n in graph.graph.node if n.name in fp32_nodes(graph)}

    def kept_ops(part: str) -> set[str]:
        return {op for name, op in kept.items() if f"/{part}" in name}

    assert {"MatMul", "Mul", "Slice"} <= kept_ops("guard_input_statistics")
    assert kept_ops("guard_features") == {"Concat"}
    assert "GlobalAveragePool" not in kept_ops("guard_pool")
    assert kept_ops("conv1_1/") == {"Conv", "Relu", "Transpose"}
    assert "MaxPool" in kept_ops("pool1_1/")
    assert not any(kept_ops(f"conv{i}_1/") for i in (2, 3, 4, 5))
    assert not kept_ops("dense1_1/") and not kept_ops("dense2_1/")  # wide: quantised
    assert {"MatMul", "Softmax"} <= kept_ops("probabilities_1/")
    only_guard = fp32_nodes(graph, first_block=False, head=False)
    assert not any("/conv1_1/" in n or "/probabilities" in n for n in only_guard)

    images, _ = colour_images(64, seed=0)
    rng = np.random.default_rng(1)
    images = np.concatenate([images, rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)])

    def features(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["features"], {"image": images[64:]})[0]

    want = features(tmp_path / "fp32.onnx")
    scale = np.abs(want).max()
    kept_graph = int8_convert(tmp_path / "fp32.onnx", tmp_path / "kept.onnx", images[:64])
    whole = int8_convert(
        tmp_path / "fp32.onnx", tmp_path / "whole.onnx", images[:64], keep_fp32=False
    )
    assert np.abs(features(kept_graph) - want).max() / scale < 0.02
    assert np.abs(features(whole) - want).max() / scale > 0.05


def quantised_pad_graph(q_scale: float):
    """uint8 (1, 2, 3, 3) -> DequantizeLinear -> Pad with zeros -> QuantizeLinear(q_scale)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "s"),
        numpy_helper.from_array(np.array(q_scale, np.float32), "qs"),
        numpy_helper.from_array(np.array(7, np.uint8), "zp"),
        numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64), "pads"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "zp"], ["xf"], name="dq"),
        helper.make_node("Pad", ["xf", "pads"], ["padded"], name="pad", mode="constant"),
        helper.make_node("QuantizeLinear", ["padded", "qs", "zp"], ["y"], name="q"),
    ]
    graph = helper.make_graph(
        nodes,
        "pad",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 2, 4, 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("q_scale", [0.5, 0.25], ids=["same scale", "other scale"])
def test_a_requantised_pad_pads_the_uint8_tensor_with_the_zero_point(q_scale):
    """ONNX Runtime ran MobileNet's zero padding in float between a dequantise and a
    quantise with the same parameters; padded in uint8 with the zero point it is the same.
    With another output scale the values change, and the graph is left alone."""
    import onnxruntime as ort

    from training.quantize import pads_requantised_drop

    model = quantised_pad_graph(q_scale)
    x = np.random.default_rng(0).integers(0, 256, (1, 2, 3, 3), dtype=np.uint8)

    def run(m):
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0]

    before = run(model)
    rewritten = pads_requantised_drop(model)
    assert rewritten == (1 if q_scale == 0.5 else 0)
    assert [n.op_type for n in model.graph.node] == (
        ["Pad"] if rewritten else ["DequantizeLinear", "Pad", "QuantizeLinear"]
    )
    np.testing.assert_array_equal(run(model), before)


def test_wide_convolutions_on_small_maps_take_the_matrix_product_kernel_exactly(tmp_path):
    """A convolution with long dot products on a small map gets a non-zero weight zero
    point in one channel, so ONNX Runtime runs it as an int8 matrix product (AMX where
    the CPU has it); a narrow one, or a wide one on a large map, stays symmetric. The
    rerouted graph answers exactly as the symmetric one does."""
    import keras
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from runtime.export import onnx_convert
    from training.quantize import GEMM_DOT_MIN, GEMM_POSITIONS_MAX, int8_convert

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="on_rgb")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="large_map")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="small_map")(x)
    x = keras.layers.Conv2D(64, 1, activation="relu", name="narrow")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    assert GEMM_DOT_MIN <= 3 * 3 * 64 and 16 * 16 <= GEMM_POSITIONS_MAX < 32 * 32

    (tmp_path / "fp32.onnx").write_bytes(onnx_convert(model, 32, None))
    images, _ = colour_images(48, seed=0)
    path = int8_convert(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", images[:32])
    graph = onnx.load(str(path))
    constants = {i.name: i for i in graph.graph.initializer}
    conv_of = {i: n.name for n in graph.graph.node if n.op_type == "Conv" for i in n.input}
    rerouted = {}
    # The weights' DequantizeLinear of each quantised Conv:
    for dq in graph.graph.node:
        if (
            dq.op_type == "DequantizeLinear"
            and dq.output[0] in conv_of
            and dq.input[0] in constants
        ):
            zero_point = numpy_helper.to_array(constants[dq.input[2]])
            rerouted[conv_of[dq.output[0]]] = (dq, bool(np.any(zero_point)))
    assert {name.split("/")[-2]: on for name, (_, on) in rerouted.items()} == {
        "large_map_1": False,
        "small_map_1": True,
        "narrow_1": False,
    }  # on_rgb, the first block, stays in float

    def run(m):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(m.SerializeToString(), options)
        return session.run(None, {"image": images[32:]})[0]

    answers = run(graph)
    dq = next(dq for dq, on in rerouted.values() if on)
    weights = numpy_helper.to_array(constants[dq.input[0]]).copy()
    zero_point = numpy_helper.to_array(constants[dq.input[2]]).copy()
    assert zero_point[0] == -1 and not np.any(zero_point[1:])
    weights[0] += 1
    constants[dq.input[0]].CopyFrom(numpy_helper.from_array(weights, dq.input[0]))
    constants[dq.input[2]].CopyFrom(numpy_helper.from_array(zero_point * 0, dq.input[2]))
    np.testing.assert_array_equal(run(graph), answers)
