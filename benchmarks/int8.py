"""int8 settings benchmark: ``python -m benchmarks.int8`` writes its section of
docs/benchmarks.md.

For MobileNet, ResNet-50 and CML-1 (224 px, random weights, the out-of-scope guard fitted
on 32 smears, as in ``benchmarks.inference``), the fp32 graph and int8 variants made with
ONNX Runtime's other quantisation settings: QDQ or QOperator format, uint8 or int8
activations, per-channel or per-tensor weights, ``reduce_range``, only Conv/MatMul
quantised, and the settings ``training.quantize`` used before the guard's features were
left in float. Each is timed as CPU milliseconds per image on one thread (a worker's
session computes each run on one thread), interleaved and best of several rounds, so a
load beside it moves the figures less than it moves wall-clock ones; the speed-up is
fp32's time over the variant's, measured in the same run. Agreement and differences are
against fp32 on the 16 smears timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inference import ROOT, package, smear_jpegs
from benchmarks.report import section_write

MODELS = ("mobilenet", "resnet50", "cml1")
CHOSEN = "chosen (training.quantize)"


def variants() -> dict[str, dict[str, Any]]:
    """``int8_convert`` keyword arguments per variant; the first is what packaging uses."""
    from onnxruntime.quantization import QuantFormat, QuantType

    return {
        CHOSEN: {},
        "before: guard features quantised too": {"keep_fp32": False},
        "QOperator format": {"quant_format": QuantFormat.QOperator},
        "int8 activations (S8S8)": {"activation_type": QuantType.QInt8},
        "per-tensor weights": {"per_channel": False},
        "reduce_range": {"reduce_range": True},
        "only Conv/MatMul/Gemm quantised": {"op_types_to_quantize": ["Conv", "MatMul", "Gemm"]},
    }


def cpu_ms_per_image(session, images: np.ndarray) -> float:
    """CPU milliseconds per image of one pass over ``images``, one image a run."""
    started = time.thread_time()
    for i in range(len(images)):
        session.run(None, {"image": images[i : i + 1]})
    return (time.thread_time() - started) * 1000 / len(images)


def measure(arch: str, out: Path, smears: list[bytes], calibration: list[bytes], rounds: int):
    """One row per variant, fp32 first, timed on ``smears``."""
    from runtime.export import onnx_session
    from runtime.preprocess import load_for_model
    from training.quantize import int8_convert

    images = np.stack([load_for_model(b, 224) for b in smears])
    folder = package(arch, 224, out, verify=smears, guard_images=calibration)
    fp32 = folder / "model.onnx"
    cal = np.stack([load_for_model(b, 224) for b in calibration])
    sessions = {"fp32": onnx_session(fp32, threads=1)}
    for name, options in variants().items():
        path = int8_convert(fp32, out / f"int8-{len(sessions)}.onnx", cal, **options)
        sessions[name] = onnx_session(path, threads=1)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up: the arena's first allocations
        cpu_ms_per_image(session, images[:2])
    for _ in range(rounds):  # interleaved, so that a changing load reaches every variant
        for name, session in sessions.items():
            times[name].append(cpu_ms_per_image(session, images))
    probabilities, features = sessions["fp32"].run(None, {"image": images})
    rows = []
    for name, session in sessions.items():
        p, f = session.run(None, {"image": images})
        rows.append(
            {
                "arch": arch,
                "variant": name,
                "ms": min(times[name]),
                "speedup": min(times["fp32"]) / min(times[name]),
                "agreement": float((p.argmax(1) == probabilities.argmax(1)).mean()),
                "probability_diff": float(np.abs(p - probabilities).max()),
                "feature_diff": float(np.abs(f - features).max() / np.abs(features).max()),
            }
        )
    return rows


def render(rows: list[dict], seconds: float, load: tuple[float, float, float]) -> str:
    lines = [
        "## int8 settings",
        "",
        f"Written by `python -m benchmarks.int8` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"({platform.machine()}, {os.cpu_count()} CPU cores, ONNX Runtime {_ort_version()}) "
        f"in {seconds:.0f} s, load average {load[0]:.1f} at the start. CPU ms per image on "
        "one thread (one image a run, best of the interleaved rounds), 224 px, random "
        "weights, the guard's features (3 pooled blocks, the penultimate layer and the "
        "pixel statistics) as the second output. Speed-up: fp32 / variant in the same run. "
        "Agreement: top-1 labels equal to fp32's on the 16 smears; differences: the largest "
        "in a probability, and in a guard feature relative to the features' largest "
        "magnitude. Every variant but the second leaves the guard's features in float "
        "(`training.quantize.fp32_nodes`) and pads in uint8.",
        "",
        "| model | variant | ms/image | speed-up | agreement | prob. diff | feature diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        speedup = "" if r["variant"] == "fp32" else f"{r['speedup']:.2f}x"
        lines.append(
            f"| {r['arch']} | {r['variant']} | {r['ms']:.2f} | {speedup} "
            f"| {r['agreement']:.0%} | {r['probability_diff']:.4f} | {r['feature_diff']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8", description=__doc__)
    parser.add_argument(
        "--smears", type=Path, default=ROOT.parent / "shared" / "data" / "bccd-smears" / "images"
    )
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), metavar="MODEL"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default docs/benchmarks.md, all models only")
    args = parser.parse_args(argv)
    if args.out is None and set(args.models) == set(MODELS):
        args.out = ROOT / "docs" / "benchmarks.md"

    started, load = time.monotonic(), os.getloadavg()
    smears = smear_jpegs(args.smears)
    calibration = smear_jpegs(args.smears, count=32, skip=len(smears))
    rows = []
    with tempfile.TemporaryDirectory(prefix="leukweb-bench-int8-") as tmp:
        for arch in args.models:
            found = measure(arch, Path(tmp) / arch, smears, calibration, args.rounds)
            for r in found:
                print(
                    f"{arch:9s} {r['variant']:40s} {r['ms']:7.2f} ms/img {r['speedup']:5.2f}x "
                    f"agreement {r['agreement']:.0%} feature diff {r['feature_diff']:.1%}",
                    flush=True,
                )
            rows += found
    if args.out is not None:
        section_write(args.out, "int8", render(rows, time.monotonic() - started, load))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
