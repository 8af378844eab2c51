"""The int8 variant of a packaged model: ONNX Runtime's static quantisation, kept only when
it keeps the model's accuracy.

Static quantisation (QDQ, weights int8 per channel, activations uint8: the fast path of
CPUs with VNNI) runs 2-4x the fp32 graph on these machines, but its activation ranges
come from calibration images, and a bad calibration costs accuracy. So the variant is
calibrated on training images, scored on the test split beside the fp32 graph, and
refused (its file not written, the reason kept in the manifest) when its accuracy drops
more than ``MAX_ACCURACY_DROP`` or its top-1 labels agree with fp32's on fewer than
``MIN_AGREEMENT`` of the test images. It never serves unless an admin chooses it.

Not every layer is quantised (:func:`fp32_nodes`): measured here on one thread, on the
CML-1 trained at 128 px by README's recipe (test split of 644 images) and on the
benchmark's 224 px models (docs/benchmarks.md, ``python -m benchmarks.int8``):

- the guard's features off the path to the probabilities (its pixel statistics, the
  concatenation of the features) stay in float. They run at full resolution on one to
  three channels, where int8 saves nothing and every quantise/dequantise step costs a
  pass over the image (quantised: 2.4 of MobileNet's 7.9 ms per image, in float 1.1),
  and one uint8 scale for the concatenation of features of very different ranges moved
  them by 16-21 % of their scale, so the guard would have scored int8's images apart;
- the last dense layer and its softmax stay in float: quantised, the softmax's output
  is quantised as well, probabilities in steps of 1/255, which the predictor's self-test
  refuses (they do not sum to 1 within 1e-3). The dense layers before it are quantised
  (CML-1's first reads 12,544 values at 224 px: its int8 graph 2.40 -> 2.13 ms an image
  on one thread). Before exported graphs were folded (``runtime.rewrites``), quantising
  the head took the trained CML-1's agreement with fp32 to 97.2 % and its accuracy 1.1
  points down (refused); folded, the head quantised whole kept 97.20 % and 99.8 %;
- the first block (a 3x3 convolution on RGB with its activation and pooling) stays in
  float: a dot product of 27 values leaves VNNI idle, and in float ORT fuses it (the
  trained CML-1's int8: 1.2x fp32 with it quantised, 1.6x without). ResNet-50's 7x7
  one stays quantised.

With all three the trained CML-1's int8 kept its accuracy within 0.2 points and agreed
with fp32 on 99.8 % of the test images (accepted).

After quantisation the wide convolutions on small maps are routed to ONNX Runtime's int8
matrix product instead of its direct convolution (:func:`wide_convs_to_gemm`, exact):
on CPUs with AMX, one thread, 224 px, MobileNet's int8 graph 3.36 -> 3.02 ms an image,
ResNet-50's 12.7 -> 10.4, CML-1's 2.76 -> 2.67.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from runtime.artifact import INT8_FILE, sha256_file
from runtime.export import onnx_outputs, onnx_session
from runtime.rewrites import graph_index, scales_fold

__all__ = ["MAX_ACCURACY_DROP", "MIN_AGREEMENT", "int8_convert", "int8_variant"]

MAX_ACCURACY_DROP = 0.005  # half a point of test accuracy
MIN_AGREEMENT = 0.99  # share of test images with the same top-1 label as fp32
CALIBRATION_BATCH = 16
#: A first block's convolution: at most RGB's channels in, dot products of at most 32
#: values (3x3 on RGB: 27; ResNet-50's 7x7 makes 147, where int8 pays: 2.8x fp32 with it
#: quantised, 2.3x without).
THIN_CHANNELS = 3
THIN_DOT = 32
#: Where ONNX Runtime's int8 matrix product beat its direct convolution (see
#: :func:`wide_convs_to_gemm`): weights per output, and output positions per image (28x28).
GEMM_DOT_MIN = 512
GEMM_POSITIONS_MAX = 28 * 28


def int8_convert(
    fp32: Path,
    out: Path,
    calibration: np.ndarray,
    *,
    keep_fp32: bool = True,
    first_block: bool = True,
    head: bool = True,
    **options: Any,
) -> Path:
    """Quantise the graph at ``fp32`` into ``out``, calibrated on ``calibration`` (uint8
    images as the graph takes them). Needs onnx and sympy (``quant_pre_process``).

    With ``keep_fp32`` the nodes of :func:`fp32_nodes` stay in float; ``options`` override
    ``quantize_static``'s arguments (for measuring other settings)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.ascontiguousarray(calibration, dtype=np.uint8)
    if not len(images):
        raise ValueError("int8 calibration needs at least one image")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._starts = iter(range(0, len(images), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._starts, None)
            if start is None:
                return None
            return {"image": images[start : start + CALIBRATION_BATCH]}

    with tempfile.TemporaryDirectory(prefix="leukweb-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        graph = onnx.load(str(prepared))
        if scales_fold(graph):
            onnx.save(graph, str(prepared))
        arguments: dict[str, Any] = {
            "quant_format": QuantFormat.QDQ,
            "per_channel": True,
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "calibrate_method": CalibrationMethod.MinMax,
            "nodes_to_exclude": fp32_nodes(graph, first_block=first_block, head=head)
            if keep_fp32
            else [],
        }
        quantize_static(str(prepared), str(out), Batches(), **{**arguments, **options})
    quantised = onnx.load(str(out))
    if pads_requantised_drop(quantised) + wide_convs_to_gemm(quantised):
        onnx.save(quantised, str(out))
    return Path(out)


def fp32_nodes(model, *, first_block: bool = True, head: bool = True) -> list[str]:
    """The nodes left in float, by their place in the graph (why: the module's notes):

    - the guard's features off the path to the probabilities (its pixel statistics and
      the concatenation), except the pools that summarise one of the path's layers;
    - with ``head``, the output layer: the path's nodes from its last MatMul or Gemm on;
    - with ``first_block``, the first block: the nodes that compute from the pixels alone
      through convolutions of at most :data:`THIN_CHANNELS` channels and :data:`THIN_DOT`
      weights per output (a 3x3 convolution on RGB, its activation and pooling).
    """
    from onnx import numpy_helper

    graph = model.graph
    constants, producer, _ = graph_index(graph)
    outputs = [o.name for o in graph.output]
    target = "probabilities" if "probabilities" in outputs else outputs[0]
    on_path: set[str] = set()
    todo = [producer[target]] if target in producer else []
    while todo:
        node = todo.pop()
        if node.name not in on_path:
            on_path.add(node.name)
            todo += [producer[i] for i in node.input if i in producer]

    def pools_the_path(node) -> bool:
        return node.op_type in ("GlobalAveragePool", "ReduceMean") and any(
            producer[i].name in on_path for i in node.input if i in producer
        )

    keep = {n.name for n in graph.node if n.name not in on_path and not pools_the_path(n)}

    if head:
        # The path's nodes from its last dense layer on (ONNX graphs are sorted).
        last = [n.name for n in graph.node if n.name in on_path and n.op_type in ("MatMul", "Gemm")]
        dense: set[str] = set()
        for node in graph.node:
            after_dense = any(i in producer and producer[i].name in dense for i in node.input)
            if node.name in on_path and (node.name == (last or [None])[-1] or after_dense):
                dense.add(node.name)
        keep |= dense

    if first_block:

        def wide(node) -> bool:
            if node.op_type in ("MatMul", "Gemm"):
                return True
            if node.op_type != "Conv":
                return False
            if node.input[1] not in constants:
                return True
            shape = numpy_helper.to_array(constants[node.input[1]]).shape
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if len(shape) != 4:
                return True
            return shape[1] * group > THIN_CHANNELS or int(np.prod(shape[1:])) > THIN_DOT

        inputs = {i.name for i in graph.input}
        pixels: set[str] = set()
        for node in graph.node:  # ONNX graphs are sorted: producers come first
            sources = [i for i in node.input if i and i not in constants]
            if not wide(node) and all(i in inputs or producer[i].name in pixels for i in sources):
                pixels.add(node.name)
        keep |= pixels & on_path
    return [n.name for n in graph.node if n.name in keep]


def pads_requantised_drop(model) -> int:
    """Pad uint8 tensors directly where the quantiser left ``DequantizeLinear -> Pad ->
    QuantizeLinear`` with one scale and zero point; returns how many it rewrote.

    ONNX Runtime 1.32 runs that Pad in float between its two conversions (MobileNet's
    ZeroPadding2D before a strided depthwise convolution: 1.1 ms per image, 14 % of the
    int8 graph). The rewrite is exact: quantising a dequantised value with the same
    parameters gives it back, and a float pad of 0 quantises to the zero point.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants, producer, users = graph_index(graph)

    def value(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(constants[name]) if name in constants else None

    def same(a: str, b: str) -> bool:
        x, y = value(a), value(b)
        return x is not None and y is not None and x.shape == y.shape and bool(np.all(x == y))

    changed = 0
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        dq = producer.get(pad.input[0])
        after = users.get(pad.output[0], [])
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if (
            dq is None
            or dq.op_type != "DequantizeLinear"
            or len(after) != 1
            or after[0].op_type != "QuantizeLinear"
            or mode != b"constant"
            or len(dq.input) < 3
            or len(after[0].input) < 3
            or any(a.name == "axis" for a in (*dq.attribute, *after[0].attribute))
        ):
            continue
        q = after[0]
        fill = value(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        if fill is None or float(fill.reshape(-1)[0]) != 0.0:
            continue
        if not (same(dq.input[1], q.input[1]) and same(dq.input[2], q.input[2])):
            continue
        zero_point = value(dq.input[2])
        assert zero_point is not None
        if zero_point.size != 1:
            continue
        fill_name = f"{pad.name}_zero_point_fill"
        graph.initializer.append(numpy_helper.from_array(zero_point.reshape(()), fill_name))
        uint8_pad = helper.make_node(
            "Pad",
            [dq.input[0], pad.input[1], fill_name, *pad.input[3:4]],
            [q.output[0]],
            name=f"{pad.name}_uint8",
            mode="constant",
        )
        graph.node.insert(list(graph.node).index(pad), uint8_pad)
        for node in (pad, q):
            graph.node.remove(node)
        if not users.get(dq.output[0], []) or users[dq.output[0]] == [pad]:
            graph.node.remove(dq)
        changed += 1
    return changed


def wide_convs_to_gemm(model) -> int:
    """Route the wide convolutions on small maps to ONNX Runtime's matrix-product kernel;
    returns how many it rerouted.

    ORT 1.32 runs a QLinearConv whose int8 weights all have zero point 0 (symmetric, as
    quantised) on its direct-convolution kernel (VNNI), any other on im2col and its
    int8 matrix product, which on CPUs with AMX ran up to twice as fast where the dot
    product is long and the map small, and up to 2.7x slower on large maps (measured
    per layer, one thread, one 224 px image: MobileNet's 14x14x512 1x1 convolutions
    0.125 -> 0.070 ms, its 112x112x32 one 0.130 -> 0.559 ms; ResNet-50's 7x7x512 3x3
    0.41 -> 0.22 ms, its 56x56x64 3x3 0.27 -> 0.36 ms). So a convolution of at least
    :data:`GEMM_DOT_MIN` weights per output and at most :data:`GEMM_POSITIONS_MAX`
    output positions per image gets zero point -1 in its first output channel, and that
    channel's weights one less: the same real weights (q - zp is unchanged; symmetric
    int8 weights lie in -127..127, so q - 1 fits), so the graph answers exactly as before.
    """
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    constants, _, users = graph_index(graph)
    inferred = shape_inference.infer_shapes(model).graph
    dims = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*inferred.value_info, *inferred.output)
    }
    changed = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        if len(dq.input) < 3 or dq.input[0] not in constants or dq.input[2] not in constants:
            continue
        weights = numpy_helper.to_array(constants[dq.input[0]])
        zero_point = numpy_helper.to_array(constants[dq.input[2]])
        convs = users.get(dq.output[0], [])
        if (
            weights.dtype != np.int8
            or weights.ndim != 4
            or zero_point.shape != weights.shape[:1]
            or np.any(zero_point)
            or not convs
            or any(c.op_type != "Conv" for c in convs)
            or users[dq.input[0]] != [dq]
            or users[dq.input[2]] != [dq]
            or int(np.prod(weights.shape[1:])) < GEMM_DOT_MIN
        ):
            continue
        positions = [int(np.prod(dims.get(c.output[0], [0, 0])[2:])) for c in convs]
        if not all(0 < p <= GEMM_POSITIONS_MAX for p in positions):
            continue
        weights, zero_point = weights.copy(), zero_point.copy()
        weights[0] -= 1
        zero_point[0] = -1
        constants[dq.input[0]].CopyFrom(numpy_helper.from_array(weights, dq.input[0]))
        constants[dq.input[2]].CopyFrom(numpy_helper.from_array(zero_point, dq.input[2]))
        changed += 1
    return changed


def _top1(session, images: np.ndarray) -> np.ndarray:
    labels = [
        onnx_outputs(session, images[i : i + CALIBRATION_BATCH]).probabilities.argmax(axis=1)
        for i in range(0, len(images), CALIBRATION_BATCH)
    ]
    return np.concatenate(labels) if labels else np.zeros(0, np.int64)


def int8_variant(
    folder: Path,
    onnx_entry: dict[str, Any],
    *,
    calibration: np.ndarray,
    calibration_source: str,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> dict[str, Any]:
    """Make, score and accept or refuse the int8 variant of ``folder``'s fp32 graph.

    Returns the manifest's ``int8`` entry; only an accepted variant's file is written
    into ``folder``.
    """
    if not len(test_images):
        raise ValueError("scoring the int8 variant needs test images")
    y = np.asarray(test_labels)
    with tempfile.TemporaryDirectory(prefix="leukweb-int8-") as tmp:
        candidate = int8_convert(
            Path(folder) / onnx_entry["file"], Path(tmp) / INT8_FILE, calibration
        )
        fp32_top1 = _top1(onnx_session(Path(folder) / onnx_entry["file"]), test_images)
        int8_top1 = _top1(onnx_session(candidate), test_images)
        fp32_accuracy = float((fp32_top1 == y).mean())
        accuracy = float((int8_top1 == y).mean())
        agreement = float((int8_top1 == fp32_top1).mean())
        entry: dict[str, Any] = {
            "accuracy": accuracy,
            "fp32_accuracy": fp32_accuracy,
            "agreement": agreement,
            "test_images": len(y),
            "calibration": {"images": len(calibration), "source": calibration_source},
            "method": "ONNX Runtime static quantisation, QDQ, per-channel int8 weights, "
            "uint8 activations, min-max calibration; BatchNorm after a ReLU folded first; "
            "the first block, the last dense layer and the guard's features off the path "
            "to the probabilities left in float; zero padding done in uint8; wide "
            "convolutions on small maps routed to the int8 matrix product",
            "limits": {"max_accuracy_drop": MAX_ACCURACY_DROP, "min_agreement": MIN_AGREEMENT},
        }
        problems = []
        if fp32_accuracy - accuracy > MAX_ACCURACY_DROP:
            problems.append(
                f"its test accuracy {accuracy:.1%} is {100 * (fp32_accuracy - accuracy):.1f} "
                f"points below fp32's {fp32_accuracy:.1%} (at most "
                f"{100 * MAX_ACCURACY_DROP:.1f} allowed)"
            )
        if agreement < MIN_AGREEMENT:
            problems.append(
                f"its top-1 label agrees with fp32's on {agreement:.1%} of the test images "
                f"(at least {MIN_AGREEMENT:.0%} required)"
            )
        if problems:
            return {**entry, "status": "refused", "reason": "; ".join(problems)}
        shutil.copyfile(candidate, Path(folder) / INT8_FILE)
    return {
        **entry,
        "status": "accepted",
        "file": INT8_FILE,
        "sha256": sha256_file(Path(folder) / INT8_FILE),
    }
