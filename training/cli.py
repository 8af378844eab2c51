"""``python -m training``: train, evaluate, compare, synth, export-augmented, demo-model.

Heavy imports (TensorFlow) happen inside the sub-commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ARCH_CHOICES = (
    "cml1",
    "resnet50",
    "resnet101",
    "densenet201",
    "vgg19",
    "efficientnetb7",
    "mobilenet",
)

EPILOG = """examples:
  python -m training train ../shared/data/taleqani-all --arch cml1 --img-size 128
  python -m training train DATA --arch mobilenet --weights none --img-size 128 --epochs 30
  python -m training evaluate runs/cml1-.../leukweb-cml1-... --run runs/cml1-...
  python -m training compare DATA --archs cml1 mobilenet --img-size 64 --epochs 5
  python -m training tabulate runs/cml1-... runs/mobilenet-... --out runs/comparison
  python -m training tradeoff runs/cml1-... runs/cml1-... --point "A=0.991,0.255" --out runs/t
  python -m training synth var/synthetic --per-class 100 --size 224
  python -m training export-augmented DATA --out var/augmented --per-class 600
  python -m training demo-model --out models/
  python -m training loso DATA --groups groups.csv --img-size 64 --epochs 10 --out runs/loso
  python -m training add-guard runs/cml1-.../leukweb-cml1-... --out runs/guarded
  python -m training ood-check ARTIFACT ../shared/data/bccd-smears/images --run runs/cml1-...
  python -m training site-calibrate ARTIFACT SITE_IMAGES --labelled SITE_LABELLED --out models/
"""


#: ``training.stain.COLOR_RECIPES``' names, here so that --help needs no TensorFlow.
COLOR_AUGMENT_CHOICES = ("strong", "light", "none")


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _add_train_options(p: argparse.ArgumentParser, *, single_arch: bool = True) -> None:
    p.add_argument("data_dir", type=Path, help="folder with one sub-folder of images per class")
    if single_arch:
        p.add_argument(
            "--arch", choices=ARCH_CHOICES, default="cml1", help="architecture (default: cml1)"
        )
    p.add_argument(
        "--weights",
        default="none",
        metavar="imagenet|none|PATH",
        help="backbone weights: 'none' trains from scratch (default), 'imagenet' "
        "downloads them if this machine can, PATH reads a local .h5 file",
    )
    p.add_argument("--epochs", type=_positive, default=100, help="maximum epochs (default: 100)")
    p.add_argument(
        "--patience",
        type=_positive,
        default=15,
        help="early-stopping patience on validation loss (default: 15)",
    )
    p.add_argument(
        "--max-fit-minutes",
        type=float,
        default=None,
        metavar="MIN",
        help="wall-clock budget for fitting: stop before an epoch that would end after "
        "it, keep the best epoch's weights, then evaluate and package as usual "
        "(default: no budget; for shared CPUs)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "plateau"),
        default="constant",
        help="'constant': Adam at one learning rate throughout, as the study (default); "
        "'plateau': halve it after 4 epochs without a lower validation loss, down to "
        "1/64 of the start (settles fits that strong colour jitter keeps noisy)",
    )
    p.add_argument(
        "--img-size",
        type=_positive,
        default=None,
        help="input size in px (default: the architecture's: 224, EfficientNetB7 600)",
    )
    p.add_argument("--batch-size", type=_positive, default=32, help="batch size (default: 32)")
    p.add_argument("--seed", type=int, default=42, help="seed for split, shuffling, augmentation")
    p.add_argument(
        "--groups",
        type=Path,
        default=None,
        metavar="CSV",
        help="CSV with columns image,group (patient or source): keeps groups whole "
        "on one side of the split; an optional 'source' column (lab, scanner, "
        "batch) adds per-source metrics to the report",
    )
    p.add_argument(
        "--label-map",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON object or CSV 'folder,label' renaming class folders (the study's "
        "names map to healthy/ALL/AML/CLL/CML without one)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs"), help="where run folders go (default: runs/)"
    )
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--color-augment",
        choices=COLOR_AUGMENT_CHOICES,
        default="strong",
        help="colour and stain jitter on the training split, after the study's "
        "augmentations (ranges in training/stain.py): 'strong' (default) on half of "
        "the images HED stain amounts sigma 0.2, hue +-72 degrees, saturation "
        "x0.4-1.6, brightness x0.75-1.25, and grayscale for 20%% of all images; "
        "'light' HED 0.1, hue +-18 degrees, saturation x0.7-1.3 (the old "
        "--stain-augment); 'none' the study's "
        "augmentations only (the default before issue #14)",
    )
    p.add_argument(
        "--stain-augment",
        dest="color_augment",
        action="store_const",
        const="light",
        help="the same as --color-augment light (kept for old commands)",
    )
    p.add_argument(
        "--stain-normalize",
        choices=("reinhard", "grayscale", "macenko"),
        default=None,
        help="a colour-normalising layer first inside the packaged model, so inference "
        "does the same: 'reinhard' matches each image's l-alpha-beta mean and std to "
        "the training split's; 'grayscale' gives the network only the luma (no colour "
        "at all). 'macenko' is refused: tf2onnx cannot convert its eigen-decomposition "
        "and SVD, so the workers (which serve the ONNX graph) could not run it, and two "
        "Taleqani runs with it collapsed to chance (docs/clinical-validity.md)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also package an int8 variant of the ONNX graph (static quantisation "
        "calibrated on training images), kept only when its test accuracy is within "
        "0.5 points of fp32's and its labels agree on 99%% of the test images",
    )
    p.add_argument(
        "--no-bn-recompute",
        action="store_true",
        help="skip re-estimating BatchNorm statistics on clean training images",
    )
    p.add_argument(
        "--review-target",
        type=float,
        default=0.99,
        help="accuracy the images not flagged 'needs review' must reach on "
        "validation (default: 0.99)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="LeukWeb offline training: train and evaluate leukaemia-subtype CNNs on "
        "blood-smear images and package them for the web app. Research use only.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train one architecture, evaluate it, package it",
        description="Split (after de-duplication), train with augmentation, "
        "evaluate on the untouched test split, write report and "
        "packaged artifact into a run folder.",
    )
    _add_train_options(p)
    p.add_argument("--name", default=None, help="artifact name (default: leukweb-<arch>)")
    p.add_argument("--version", default=None, help="artifact version (default: UTC timestamp)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="re-evaluate a packaged model on a run's test split",
        description="Load a packaged artifact (verifying its hash) and score it "
        "on the test split saved by a training run.",
    )
    p.add_argument("artifact", type=Path, help="artifact folder (<name>-<version>/)")
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="run folder holding split.json (default: the artifact's parent)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the images are now, if the data folder moved",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the report (default: <run>/evaluation-<time>/)",
    )
    p.add_argument(
        "--review-target",
        type=float,
        default=None,
        help="re-choose the needs-review threshold on validation for this target "
        "accuracy (reported only; the artifact keeps its own)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "compare",
        help="train several architectures on one split, tabulate",
        description="Train each architecture on the same split and write "
        "comparison.json, comparison.md and comparison.svg.",
    )
    _add_train_options(p, single_arch=False)
    p.add_argument(
        "--archs",
        nargs="+",
        choices=ARCH_CHOICES,
        default=list(ARCH_CHOICES),
        help="architectures to compare (default: all seven)",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "loso",
        help="leave-one-source-out: retrain once per held-out source",
        description="For each source named in the group CSV's 'source' column, "
        "train on the other sources and test on it; writes "
        "loso.json and loso.md plus one run folder per source.",
    )
    _add_train_options(p)
    p.set_defaults(func=cmd_loso, name=None, version=None)

    p = sub.add_parser(
        "add-guard",
        help="give an existing artifact the out-of-scope guard",
        description="Fit the multi-check out-of-scope guard (several layers and "
        "input checks, see docs/clinical-validity.md) on the artifact's training split "
        "(thresholds on validation) and write a new artifact; the original is left as it is.",
    )
    p.add_argument("artifact", type=Path)
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="run folder holding split.json (default: the artifact's parent)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the new artifact")
    p.add_argument("--version", default=None, help="new version (default: <old>-guard)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.set_defaults(func=cmd_add_guard)

    p = sub.add_parser(
        "ood-check",
        help="how often the guard flags given images",
        description="Score image folders and generated non-smears (noise, solid colours, "
        "text, scenes, blank fields, blurred smears, photos of a screen or of paper) with "
        "an artifact's out-of-scope guard; print the flagged fraction of each and which "
        "check flagged them.",
    )
    p.add_argument("artifact", type=Path)
    p.add_argument("folders", type=Path, nargs="*", help="folders of images (recursive)")
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="also check this run's test split (real in-distribution smears)",
    )
    p.add_argument(
        "--per-kind",
        type=_positive,
        default=100,
        help="generated images per non-smear kind (default: 100)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    p.set_defaults(func=cmd_ood_check)

    p = sub.add_parser(
        "site-calibrate",
        help="a new model version with BatchNorm statistics from a site's images",
        description="Re-estimate the BatchNorm statistics of ARTIFACT on a site's "
        "unlabelled smears and package the result as a NEW version (its own version "
        "string, lineage 'calibrated from', ONNX graph and evaluation). The original "
        "artifact is only read. With --labelled, accuracy before and after is measured "
        "on the site's labelled images.",
    )
    p.add_argument("artifact", type=Path)
    p.add_argument("site_folder", type=Path, help="the site's unlabelled images (recursive)")
    p.add_argument("--out", type=Path, required=True, help="folder for the new artifact")
    p.add_argument("--version", default=None, help="new version (default: <old>-site-<site>)")
    p.add_argument("--site", default=None, help="site name (default: the folder's name)")
    p.add_argument(
        "--labelled",
        type=Path,
        default=None,
        help="the site's labelled images, one sub-folder per class: accuracy before/after",
    )
    p.set_defaults(func=cmd_site_calibrate)

    p = sub.add_parser(
        "tabulate",
        help="compare finished runs made on the same split",
        description="Write comparison.json/.md/.svg from existing run folders "
        "(refused unless every run used the identical split).",
    )
    p.add_argument("runs", type=Path, nargs="+", help="run folders (each with report.json)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_tabulate)

    p = sub.add_parser(
        "tradeoff",
        help="clean accuracy against the worst colour/stain shift, per run",
        description="Write tradeoff.json/.md/.svg: one point per run folder (its "
        "report's robustness table), plus points given by hand with --point.",
    )
    p.add_argument("runs", type=Path, nargs="*", help="run folders (each with report.json)")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="LABEL=CLEAN,WORST",
        help="a point measured elsewhere, accuracies as fractions (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_tradeoff)

    p = sub.add_parser(
        "synth",
        help="write a synthetic smear data set (NOT real data)",
        description="Cartoon smear fields whose white cells differ by class, "
        "deterministic by seed, marked SYNTHETIC.",
    )
    p.add_argument("out", type=Path, help="folder to create")
    p.add_argument("--classes", nargs="+", default=["healthy", "ALL", "AML", "CLL", "CML"])
    p.add_argument("--per-class", type=_positive, default=100)
    p.add_argument("--size", type=_positive, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "export-augmented",
        help="write a balanced augmented set for inspection",
        description="Write N augmented images per class (the study used 600). "
        "For looking at, not for training: training augments on the "
        "fly after the split.",
    )
    p.add_argument("data_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-class", type=_positive, default=600)
    p.add_argument("--img-size", type=_positive, default=224)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="use only the training split saved in this run folder",
    )
    p.add_argument("--label-map", type=Path, default=None, metavar="FILE")
    p.set_defaults(func=cmd_export_augmented)

    p = sub.add_parser(
        "demo-model",
        help="train a tiny SYNTHETIC demo model (~1 min)",
        description="Train CML-1 at 64 px on generated 5-class fields (healthy, "
        "ALL, AML, CLL, CML) so the web app has a model to run. "
        "Marked synthetic; NOT for clinical use.",
    )
    p.add_argument("--out", type=Path, default=Path("models"), help="default: models/")
    p.add_argument("--name", default="demo-synthetic")
    p.add_argument("--version", default="1")
    p.add_argument("--per-class", type=_positive, default=80)
    p.add_argument("--epochs", type=_positive, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing demo artifact")
    p.set_defaults(func=cmd_demo_model)
    return parser


def _config(args, arch: str):
    from training.train import TrainConfig

    return TrainConfig(
        data_dir=str(args.data_dir),
        arch=arch,
        weights=args.weights,
        epochs=args.epochs,
        patience=args.patience,
        max_fit_minutes=args.max_fit_minutes,
        lr_schedule=args.lr_schedule,
        img_size=args.img_size,
        batch_size=args.batch_size,
        seed=args.seed,
        groups=str(args.groups) if args.groups else None,
        label_map=str(args.label_map) if args.label_map else None,
        out=str(args.out),
        name=getattr(args, "name", None),
        version=getattr(args, "version", None),
        augment=not args.no_augment,
        recompute_bn=not args.no_bn_recompute,
        color_augment=args.color_augment,
        stain_normalize=args.stain_normalize,
        review_target=args.review_target,
        int8=args.int8,
    )


def _summary(report: dict) -> str:
    t = report["evaluation"]["test"]
    lines = [
        f"{report['architecture']}: test accuracy {t['accuracy']:.4f}, macro F1 "
        f"{t['macro_f1']:.4f}, ECE {t['ece_before']:.4f} -> {t['ece_after']:.4f}",
        "baselines: "
        + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in report["baselines"].items()),
    ]
    if report.get("baseline_warning"):
        lines.append("WARNING: " + report["baseline_warning"])
    from training.report import colour_blind_line

    blind = colour_blind_line(report.get("colour_blind"))
    if blind:
        lines.insert(0, blind)
    return "\n".join(lines)


def cmd_train(args) -> int:
    from training.train import run_training

    result = run_training(_config(args, args.arch))
    print(_summary(result.report))
    print(f"run folder: {result.run_dir}\nartifact:   {result.artifact_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from training.evaluate_artifact import evaluate_artifact

    out, report = evaluate_artifact(
        args.artifact,
        run_dir=args.run,
        data_dir=args.data_dir,
        out=args.out,
        review_target=args.review_target,
    )
    print(_summary(report))
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_compare(args) -> int:
    from training.compare import run_compare

    out = run_compare(lambda arch: _config(args, arch), args.archs)
    print((out / "comparison.md").read_text(encoding="utf-8"))
    print(f"comparison folder: {out}")
    return 0


def cmd_tabulate(args) -> int:
    from training.compare import tabulate_runs

    out = tabulate_runs(args.runs, args.out)
    print((out / "comparison.md").read_text(encoding="utf-8"))
    return 0


def _point(text: str) -> tuple[str, float, float]:
    label, _, values = text.rpartition("=")
    clean, worst = (float(v) for v in values.split(","))
    if not label or not (0 <= worst <= 1 and 0 <= clean <= 1):
        raise ValueError(f"--point wants LABEL=CLEAN,WORST with fractions, got {text!r}")
    return label, clean, worst


def cmd_tradeoff(args) -> int:
    from training.compare import tradeoff_runs

    out = tradeoff_runs(args.runs, args.out, [_point(p) for p in args.point])
    print((out / "tradeoff.md").read_text(encoding="utf-8"))
    return 0


def cmd_loso(args) -> int:
    from training.validity import run_loso

    summary = run_loso(_config(args, args.arch), args.out)
    print((Path(args.out) / "loso.md").read_text(encoding="utf-8"))
    print(f"mean accuracy over held-out sources: {summary['mean_accuracy']:.4f}")
    return 0


def cmd_add_guard(args) -> int:
    from training.validity import add_guard

    folder = add_guard(
        args.artifact, run_dir=args.run, out=args.out, version=args.version, data_dir=args.data_dir
    )
    print(f"artifact with out-of-scope guard: {folder}")
    return 0


def cmd_ood_check(args) -> int:
    import json

    from training.validity import ood_check

    result = ood_check(
        args.artifact, args.folders, per_kind=args.per_kind, seed=args.seed, run_dir=args.run
    )
    print(
        f"guard {result['method']} ({result['layer']}): threshold {result['threshold']:.2f}, "
        f"each check at the {result['quantile']:.2%} quantile of validation"
    )
    for name, row in result["sets"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in row["reasons"].items())
        print(
            f"{row['rate']:7.1%}  {row['flagged']:4d}/{row['n']:<4d} flagged  {name}"
            + (f"  [{reasons}]" if reasons else "")
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def cmd_site_calibrate(args) -> int:
    from training.site_calibration import site_calibrate

    folder, facts = site_calibrate(
        args.artifact,
        args.site_folder,
        out=args.out,
        version=args.version,
        site=args.site,
        labelled=args.labelled,
    )
    print(f"calibrated on {facts['images']} images of {facts['site']} in {facts['seconds']:.0f} s")

    def pct(v):
        return "-" if v is None else f"{v:.1%}"

    print(
        f"site images flagged out of scope: {pct(facts['site_flagged_before'])} before, "
        f"{pct(facts['site_flagged_after'])} after"
    )
    lab = facts["labelled"]
    if lab:
        for key in ("accuracy", "macro_f1", "out_of_scope"):
            print(f"labelled {key}: {pct(lab['before'][key])} -> {pct(lab['after'][key])}")
    print(f"new version: {folder}")
    return 0


def cmd_synth(args) -> int:
    from training.synth import write_dataset

    out = write_dataset(args.out, args.classes, args.per_class, args.size, args.seed)
    print(f"wrote {args.per_class * len(args.classes)} SYNTHETIC images to {out}")
    return 0


def cmd_export_augmented(args) -> int:
    from training.compare import export_augmented

    out = export_augmented(
        args.data_dir,
        args.out,
        per_class=args.per_class,
        size=args.img_size,
        seed=args.seed,
        run_dir=args.run,
        label_map=args.label_map,
    )
    print(f"wrote augmented images to {out}")
    return 0


def cmd_demo_model(args) -> int:
    from training.compare import demo_model

    t0 = time.monotonic()
    artifact, report = demo_model(
        args.out,
        name=args.name,
        version=args.version,
        per_class=args.per_class,
        epochs=args.epochs,
        seed=args.seed,
        force=args.force,
    )
    print(_summary(report))
    print(
        f"SYNTHETIC demo model (not for clinical use): {artifact} ({time.monotonic() - t0:.0f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from runtime.artifact import ArtifactError
    from training.architectures import WeightsUnavailableError
    from training.data import DatasetError

    try:
        return int(args.func(args) or 0)
    except (DatasetError, WeightsUnavailableError, ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
