"""Multi-run commands: ``compare`` (several architectures, one split), ``export-augmented``
and ``demo-model`` (a tiny synthetic model so the web app has something to run)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.artifact import ArtifactError
from training import data as data_mod

if TYPE_CHECKING:  # training.train imports TensorFlow; run_compare imports it when called
    from training.train import TrainConfig


def run_compare(make_config: Callable[[str], TrainConfig], archs: Sequence[str]) -> Path:
    """Train each architecture on the same split; write comparison.{json,md,svg}."""
    from training.train import run_training

    first = make_config(archs[0])
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(first.out) / f"compare-{stamp}"
    out.mkdir(parents=True)
    prepared = data_mod.prepare(
        Path(first.data_dir),
        seed=first.seed,
        label_map=data_mod.read_label_map(Path(first.label_map) if first.label_map else None),
        groups_csv=Path(first.groups) if first.groups else None,
    )
    arrays_by_size: dict[int, dict] = {}
    for arch in archs:
        cfg = make_config(arch)
        size = cfg.resolved_size()
        if size not in arrays_by_size:
            arrays_by_size[size] = {
                part: data_mod.load_images(
                    Path(prepared.data_dir), prepared.splits[part], prepared.classes, size
                )
                for part in data_mod.SPLITS
            }
        run_training(cfg, prepared=prepared, arrays=arrays_by_size[size], run_dir=out / arch)
    tabulate_runs([out / arch for arch in archs], out)
    return out


def _split_key(run_dir: Path) -> tuple:
    split = json.loads((Path(run_dir) / "split.json").read_text(encoding="utf-8"))
    return tuple(tuple(sorted(s["sha256"] for s in split["splits"][p])) for p in data_mod.SPLITS)


def tradeoff_row(report: dict, label: str) -> dict:
    """A run's point on the trade-off curve: clean accuracy, its worst shift and the recipe."""
    rob = report["robustness"]
    worst = min(rob["shifts"], key=lambda r: r["accuracy"])
    recipe = (report.get("color_augmentation") or {}).get("recipe")
    config = report.get("config") or {}
    return {
        "label": label,
        "input_size": report.get("input_size"),
        "recipe": recipe or ("light" if config.get("stain_augment") else None),
        "stain_normalize": config.get("stain_normalize"),
        "epochs_run": (report.get("training") or {}).get("epochs_run"),
        "clean": rob["clean"]["accuracy"],
        "worst": worst["accuracy"],
        "worst_label": worst["label"],
        "shifts": {r["label"]: r["accuracy"] for r in rob["shifts"]},
    }


def tradeoff_runs(
    run_dirs: Sequence[Path], out: Path, points: Sequence[tuple[str, float, float]] = ()
) -> Path:
    """tradeoff.{json,md,svg}: each run's clean accuracy against its worst colour/stain
    shift, plus ``points`` (label, clean, worst) measured elsewhere (e.g. older runs)."""
    from training import charts

    rows = []
    for run in (Path(r) for r in run_dirs):
        report = json.loads((run / "report.json").read_text(encoding="utf-8"))
        rows.append(tradeoff_row(report, report.get("name") or run.name))
    rows.extend({"label": n, "clean": c, "worst": w, "given": True} for n, c, w in points)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tradeoff.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    lines = [
        "| model | px | recipe | epochs | clean | worst shift | which | within 5 points |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r.get('input_size') or '-'} | {r.get('recipe') or '-'}"
            f"{' + ' + r['stain_normalize'] if r.get('stain_normalize') else ''} | "
            f"{r.get('epochs_run') or '-'} | {r['clean']:.1%} | {r['worst']:.1%} | "
            f"{r.get('worst_label', '-')} | {'yes' if r['clean'] - r['worst'] <= 0.05 else 'no'} |"
        )
    (out / "tradeoff.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    charts.save_svg(
        charts.tradeoff_svg([(r["label"], r["clean"], r["worst"]) for r in rows]),
        out / "tradeoff.svg",
    )
    return out


def tabulate_runs(run_dirs: Sequence[Path], out: Path) -> Path:
    """Tabulate finished runs made on the identical split: comparison.{json,md,svg}."""
    from training import charts

    run_dirs = [Path(r) for r in run_dirs]
    keys = {_split_key(r) for r in run_dirs}
    if len(keys) != 1:
        raise ArtifactError("these runs were not made on the same split; they cannot be compared")
    rows, baselines, sizes = [], None, None
    for run in run_dirs:
        report = json.loads((run / "report.json").read_text(encoding="utf-8"))
        t = report["evaluation"]["test"]
        baselines, sizes = report["baselines"], report["data"]["sizes"]
        rows.append(
            {
                "arch": report["architecture"],
                "run": run.name,
                "input_size": report["input_size"],
                "weights": report["config"]["weights"],
                "accuracy": t["accuracy"],
                "macro_f1": t["macro_f1"],
                "macro_roc_auc": t["macro_roc_auc"],
                "ece_after": t["ece_after"],
                "epochs_run": report["training"]["epochs_run"],
                "wall_seconds": report["training"]["wall_seconds"],
            }
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(
        json.dumps({"rows": rows, "baselines": baselines, "split": sizes}, indent=1),
        encoding="utf-8",
    )
    lines = [
        "| architecture | px | accuracy | macro F1 | ROC AUC | ECE (cal.) | epochs | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        auc = "-" if r["macro_roc_auc"] is None else f"{r['macro_roc_auc']:.3f}"
        lines.append(
            f"| {r['arch']} | {r['input_size']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
            f"{auc} | {r['ece_after']:.4f} | {r['epochs_run']} | {r['wall_seconds']:.0f} |"
        )
    for k, v in (baselines or {}).items():
        lines.append(
            f"| baseline: {k} | - | {v['accuracy']:.4f} | {v['macro_f1']:.4f} | - | - | - | - |"
        )
    (out / "comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    charts.save_svg(charts.comparison_svg(rows, baselines), out / "comparison.svg")
    return out


def export_augmented(
    data_dir: Path,
    out: Path,
    *,
    per_class: int = 600,
    size: int = 224,
    seed: int = 42,
    run_dir: Path | None = None,
    label_map: Path | None = None,
) -> Path:
    """Write ``per_class`` augmented PNGs per class (balanced), from a run's training split
    when ``run_dir`` is given, else from every unique image (for inspection only)."""
    from PIL import Image

    from training.augment import augmented_copies

    if run_dir is not None:
        prepared = data_mod.PreparedData.load(Path(run_dir) / "split.json")
        samples, root = prepared.splits["train"], Path(prepared.data_dir)
    else:
        root = Path(data_dir)
        samples = data_mod.deduplicate(
            data_mod.scan_folder(root, data_mod.read_label_map(label_map))
        ).samples
    classes = sorted({s.label for s in samples})
    out = Path(out)
    for ci, label in enumerate(classes):
        chosen = [s for s in samples if s.label == label]
        x, _ = data_mod.load_images(root, chosen, classes, size)
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(augmented_copies(x, per_class, seed + 1000 * ci)):
            Image.fromarray(img).save(folder / f"aug-{i:04d}.png")
    (out / "AUGMENTED.txt").write_text(
        f"{per_class} augmented images per class from {root} "
        f"({'training split of ' + str(run_dir) if run_dir else 'all unique images'}), "
        f"seed {seed}. For inspection: do not split these for training and testing.\n",
        encoding="utf-8",
    )
    return out


def demo_model(
    out: Path,
    *,
    name: str = "demo-synthetic",
    version: str = "1",
    per_class: int = 80,
    epochs: int = 40,
    seed: int = 0,
    force: bool = False,
    size: int = 64,
):
    """Train CML-1 on generated 5-class fields and package it into ``out``. NOT clinical."""
    from training.synth import DEMO_CLASSES, write_dataset
    from training.train import TrainConfig, run_training

    target = Path(out) / f"{name}-{version}"
    if target.exists():
        if not force:
            raise ArtifactError(f"{target} exists: pass --force to replace it")
        shutil.rmtree(target)
    Path(out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="leukweb-demo-") as tmp:
        data_dir = write_dataset(Path(tmp) / "data", DEMO_CLASSES, per_class, size, seed)
        cfg = TrainConfig(
            data_dir=str(data_dir),
            arch="cml1",
            epochs=epochs,
            patience=10,
            img_size=size,
            batch_size=32,
            seed=seed,
            out=str(Path(tmp) / "runs"),
            name=name,
            version=version,
            synthetic=True,
            note="SYNTHETIC demo model: cartoon smear fields, NOT for clinical use.",
            # The cartoon classes differ partly by colour, and no lab's stain will ever
            # reach this model: the robust recipe only cost it accuracy (96 % -> 82 %).
            color_augment="none",
        )
        result = run_training(cfg, run_dir=Path(tmp) / "run", package_dir=Path(out))
    return result.artifact_dir, result.report
