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

from runtime.artifact import INT8_FILE, sha256_file
from runtime.export import onnx_outputs, onnx_session

__all__ = ["MAX_ACCURACY_DROP", "MIN_AGREEMENT", "int8_convert", "int8_variant"]

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
            "uint8 activations, min-max calibration",
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
