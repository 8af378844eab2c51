"""The int8 variant of a packaged model: ONNX Runtime's static quantisation, kept only when
it keeps the model's accuracy.

Static quantisation (QDQ, weights int8 per channel, activations uint8: the fast path of
CPUs with VNNI) runs 2-4x the fp32 graph on these machines, but its activation ranges
come from calibration images, and a bad calibration costs accuracy. So the variant is
calibrated on training images, scored on the test split beside the fp32 graph, and
refused (its file not written, the reason kept in the manifest) when its accuracy drops
more than ``MAX_ACCURACY_DROP`` or its top-1 labels agree with fp32's on fewer than
``MIN_AGREEMENT`` of the test images. It never serves unless an admin chooses it.
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

__all__ = ["MAX_ACCURACY_DROP", "MIN_AGREEMENT", "int8_convert", "int8_variant", "scales_fold"]

MAX_ACCURACY_DROP = 0.005  # half a point of test accuracy
MIN_AGREEMENT = 0.99  # share of test images with the same top-1 label as fp32
CALIBRATION_BATCH = 16


def int8_convert(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """Quantise the graph at ``fp32`` into ``out``, calibrated on ``calibration`` (uint8
    images as the graph takes them). Needs onnx and sympy (``quant_pre_process``)."""
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
        quantize_static(
            str(prepared),
            str(out),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return Path(out)


def scales_fold(model) -> int:
    """Fold BatchNorm's scale into the layer before it, and move its shift past the pool,
    in an ONNX graph about to be quantised; returns how many nodes it changed.

    CML-1's blocks are Conv -> ReLU -> BatchNorm -> MaxPool: the BatchNorm (a per-channel
    Mul and Add) sits after the ReLU, where no optimiser folds it, and quantised it ran at
    full resolution as QLinearMul/QLinearAdd, which cost CML-1 more than int8 saved in its
    convolutions (int8 1.5x fp32 instead of 2x, #13). Both rewrites are exact in real
    arithmetic: ``relu(y) * s == relu(y * s)`` for ``s > 0``, so the scale moves into the
    weights (and bias) of the Conv or MatMul that made ``y``; a per-channel constant
    commutes with a max, so ``maxpool(x + b) == maxpool(x) + b`` at a quarter of the
    pixels. A channel with a scale that is not positive keeps its layer as it was.
    """
    from onnx import numpy_helper

    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)

    def constant(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(constants[name]) if name in constants else None

    def only_user(name: str, node) -> bool:
        return users.get(name, []) == [node] and name not in {o.name for o in graph.output}

    def replace(name: str, value: np.ndarray) -> None:
        constants[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    changed, stale = 0, set()
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        scale = constant(mul.input[1])
        relu = producer.get(mul.input[0])
        if scale is None or relu is None or relu.op_type != "Relu":
            continue
        layer, shift = producer.get(relu.input[0]), None
        if layer is not None and layer.op_type == "Add" and constant(layer.input[1]) is not None:
            shift, layer = layer, producer.get(layer.input[0])
        if layer is None or layer.op_type not in ("Conv", "MatMul"):
            continue
        weights = constant(layer.input[1])
        if weights is None:
            continue
        s = scale.astype(np.float64).reshape(-1)
        # Conv weights are (out, in, kh, kw) and its output NCHW; MatMul's are (in, out).
        conv = layer.op_type == "Conv"
        channels = weights.shape[0 if conv else -1]
        owned = [(layer.input[1], layer), (relu.input[0], relu), (mul.input[0], mul)]
        biases = [(layer.input[2], layer)] if conv and len(layer.input) > 2 else []
        if shift is not None:
            owned.append((layer.output[0], shift))
            biases.append((shift.input[1], shift))
        # The channels' axis in each bias: last in Conv's own and after a MatMul, NCHW's
        # axis 1 in a constant added to a Conv's output; a factor must keep a bias's shape.
        factors = [
            s.reshape(()) if s.size == 1 else s.reshape(-1, 1, 1) if conv and node is shift else s
            for _, node in biases
        ]
        fits = all(
            (bias := constant(name)) is not None
            and np.broadcast_shapes(bias.shape, factor.shape) == bias.shape
            for (name, _), factor in zip(biases, factors, strict=True)
        )
        if (
            not np.all(s > 0)
            or s.size not in (1, channels)
            or not fits
            or not all(only_user(name, node) for name, node in owned + biases)
        ):
            continue
        replace(layer.input[1], weights * (s.reshape(-1, 1, 1, 1) if conv and s.size > 1 else s))
        for (name, _), factor in zip(biases, factors, strict=True):
            bias = constant(name)
            assert bias is not None
            replace(name, bias * factor)
        stale.add(relu.output[0])
        relu.output[0] = mul.output[0]
        graph.node.remove(mul)
        if only_user(mul.input[1], mul):
            graph.initializer.remove(constants.pop(mul.input[1]))
        changed += 1

    producer = {out: node for node in graph.node for out in node.output}
    for pool in [n for n in graph.node if n.op_type == "MaxPool" and len(n.output) == 1]:
        add = producer.get(pool.input[0])
        if add is None or add.op_type != "Add" or not only_user(add.output[0], pool):
            continue
        shift = constant(add.input[1])
        # Only a constant per channel (NCHW) commutes with the max over each window.
        if shift is None or (shift.size != 1 and (shift.ndim != 4 or shift.size != shift.shape[1])):
            continue
        # x -> Add -> t -> MaxPool -> u  becomes  x -> MaxPool -> t -> Add -> u
        x, t, u = add.input[0], add.output[0], pool.output[0]
        pool.input[0], pool.output[0] = x, t
        add.input[0], add.output[0] = t, u
        graph.node.remove(add)
        graph.node.insert(list(graph.node).index(pool) + 1, add)
        stale.add(t)  # now the pool's output: a quarter of the size recorded for it
        changed += 1
    # Shapes recorded for tensors that changed or went: the quantiser infers them again.
    kept = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
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
            "uint8 activations, min-max calibration; BatchNorm after a ReLU folded first",
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
