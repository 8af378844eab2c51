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

With ``--trained`` (a packaged artifact with an ONNX graph) and ``--data`` (the data set
it was trained on), the same variants of that model, calibrated as packaging does (its
training split's seeded sample), are scored on its test split: accuracy, agreement with
fp32, and whether ``training.quantize`` would accept them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
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
        "every layer quantised": {"keep_fp32": False},
        "guard's features in float only": {"first_block": False, "head": False},
        "... and the output layer": {"first_block": False},
        "... and the first block, not the output layer": {"head": False},
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


def trained(folder: Path, data: Path, seed: int, rounds: int) -> list[dict]:
    """Each variant of a trained artifact's graph, scored on its test split."""
    from runtime.artifact import read_manifest
    from runtime.export import onnx_outputs, onnx_session
    from training import data as data_mod
    from training.quantize import MAX_ACCURACY_DROP, MIN_AGREEMENT, int8_convert
    from training.train import _calibration_sample

    manifest = read_manifest(folder)
    prepared = data_mod.prepare(data, seed=seed)
    load = partial(data_mod.load_images, Path(prepared.data_dir), classes=prepared.classes)
    x_train, _ = load(prepared.splits["train"], size=manifest.input_size)
    x_test, y_test = load(prepared.splits["test"], size=manifest.input_size)
    calibration = _calibration_sample(x_train, seed=seed)

    def labels(session) -> np.ndarray:
        return np.concatenate(
            [onnx_outputs(session, x_test[i : i + 16]).probabilities.argmax(1)
             for i in range(0, len(x_test), 16)]
        )  # fmt: skip

    sessions = {"fp32": onnx_session(folder / "model.onnx", threads=1)}
    with tempfile.TemporaryDirectory(prefix="leukweb-bench-int8-") as tmp:
        for name, options in variants().items():
            path = Path(tmp) / f"int8-{len(sessions)}.onnx"
            int8_convert(folder / "model.onnx", path, calibration, **options)
            sessions[name] = onnx_session(path, threads=1)
        timed = x_test[:64]
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(rounds):
            for name, session in sessions.items():
                times[name].append(cpu_ms_per_image(session, timed))
        reference = labels(sessions["fp32"])
        fp32_accuracy = float((reference == y_test).mean())
        rows = []
        for name, session in sessions.items():
            got = labels(session)
            accuracy, agreement = float((got == y_test).mean()), float((got == reference).mean())
            rows.append(
                {
                    "variant": name,
                    "ms": min(times[name]),
                    "speedup": min(times["fp32"]) / min(times[name]),
                    "accuracy": accuracy,
                    "agreement": agreement,
                    "accepted": fp32_accuracy - accuracy <= MAX_ACCURACY_DROP
                    and agreement >= MIN_AGREEMENT,
                }
            )
    return rows


def render_trained(folder: Path, rows: list[dict]) -> list[str]:
    lines = [
        "",
        f"### A trained model: {folder.name}",
        "",
        "The same variants of a trained model's graph, calibrated as packaging does (a "
        "seeded sample of its training split), scored on its test split; CPU ms per image "
        "on one thread on 64 test images. Accepted: within `training.quantize`'s limits "
        "(at most 0.5 points of accuracy lost, at least 99 % agreement with fp32).",
        "",
        "| variant | ms/image | speed-up | test accuracy | agreement | accepted |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["variant"] == "fp32":
            speedup = agreement = accepted = ""
        else:
            speedup, agreement = f"{r['speedup']:.2f}x", f"{r['agreement']:.1%}"
            accepted = "yes" if r["accepted"] else "no"
        lines.append(
            f"| {r['variant']} | {r['ms']:.2f} | {speedup} | {r['accuracy']:.2%} "
            f"| {agreement} | {accepted} |"
        )
    return lines


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
        "magnitude. The chosen variant leaves in float what `training.quantize.fp32_nodes` "
        "lists (the guard's features off the path to the probabilities, the output layer, "
        "the first block); the next four leave less or nothing in float; the rest change one of "
        "ONNX Runtime's settings of the chosen one. All pad in uint8 "
        "(`training.quantize.pads_requantised_drop`): before it, MobileNet's int8 ran 1.55x "
        "fp32 with every layer quantised.",
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
    parser.add_argument("--trained", type=Path, help="a trained artifact folder, scored too")
    parser.add_argument("--data", type=Path, help="the data set --trained was trained on")
    parser.add_argument("--seed", type=int, default=42, help="--trained's split seed")
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
    extra: list[str] = []
    if args.trained is not None:
        if args.data is None:
            parser.error("--trained needs --data")
        found = trained(args.trained, args.data, args.seed, args.rounds)
        for r in found:
            print(
                f"{args.trained.name} {r['variant']:40s} {r['ms']:6.2f} ms/img "
                f"{r['speedup']:5.2f}x accuracy {r['accuracy']:.2%} agreement "
                f"{r['agreement']:.1%} accepted {r['accepted']}",
                flush=True,
            )
        extra = render_trained(args.trained, found)
    if args.out is not None:
        markdown = render(rows, time.monotonic() - started, load) + "\n".join(extra) + "\n"
        section_write(args.out, "int8", markdown)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
