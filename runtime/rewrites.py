"""Rewrites of exported ONNX graphs that keep the model's answers: exact in real
arithmetic, moved by float rounding only (~1e-7 in a probability), and the export's
verification against the Keras model checks every artifact.

Used where a graph is made: :func:`runtime.export.onnx_convert` folds every fp32 graph
before it is stored, and ``training.quantize`` folds the graph it quantises (graphs
exported before the fold are folded there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["graph_index", "scales_fold"]


def graph_index(graph) -> tuple[dict[str, Any], dict[str, Any], dict[str, list]]:
    """An ONNX graph's initializers by name, each output's producing node, and each
    value's consuming nodes: what the graph rewrites below look nodes up by."""
    constants = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return constants, producer, users


def scales_fold(model) -> int:
    """Fold BatchNorm's scale into the layer before it, and move its shift past the pools
    that read it; returns how many nodes it changed.

    CML-1's blocks are Conv -> ReLU -> BatchNorm -> MaxPool: the BatchNorm (a per-channel
    Mul and Add) sits after the ReLU, where no optimiser folds it. Quantised, it ran at
    full resolution as QLinearMul/QLinearAdd, which cost CML-1 more than int8 saved in its
    convolutions (int8 1.5x fp32 instead of 2x, #13); in float, ONNX Runtime leaves the
    Add outside its blocked layout, with a copy out of it and back around each one
    (CML-1 at 224 px: 5.9 ms an image on one thread, folded 4.9). Both rewrites are
    exact in real arithmetic: ``relu(y) * s == relu(y * s)`` for ``s > 0``, so the scale
    moves into the weights (and bias) of the Conv or MatMul that made ``y``; a
    per-channel constant commutes with a max, so ``maxpool(x + b) == maxpool(x) + b`` at
    a quarter of the pixels, and with a mean, so a guard's tap on the BatchNorm
    (``GlobalAveragePool``) adds it to its 1x1 map instead of keeping it at full
    resolution outside the blocked layout (CML-1 224 px with its guard: 4.5 -> 4.2 ms). A
    channel with a scale that is not positive keeps its layer as it was.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants, producer, users = graph_index(graph)

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

    _, _, users = graph_index(graph)
    for add in [n for n in graph.node if n.op_type == "Add"]:
        shift = constant(add.input[1])
        pools = users.get(add.output[0], [])
        # Only a constant per channel (NCHW) commutes with the max over each window, and
        # with the mean over the map that a guard's tap takes.
        if (
            shift is None
            or (shift.size != 1 and (shift.ndim != 4 or shift.size != shift.shape[1]))
            or not pools
            or add.output[0] in {o.name for o in graph.output}
            or not all(
                (n.op_type == "MaxPool" and len(n.output) == 1) or n.op_type == "GlobalAveragePool"
                for n in pools
            )
        ):
            continue
        # x -> Add -> t -> pool -> u  becomes  x -> pool -> t' -> Add -> u, for each pool
        for k, pool in enumerate(pools):
            pooled = f"{pool.output[0]}_unshifted"
            moved = helper.make_node(
                "Add", [pooled, add.input[1]], [pool.output[0]], name=f"{add.name}_after_{k}"
            )
            pool.input[0], pool.output[0] = add.input[0], pooled
            graph.node.insert(list(graph.node).index(pool) + 1, moved)
        stale.add(add.output[0])
        graph.node.remove(add)
        changed += 1
    # Shapes recorded for tensors that changed or went: the quantiser infers them again.
    kept = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return changed
