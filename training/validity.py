"""Clinical-validity commands: leave-one-source-out, adding a guard, checking the guard.

``loso`` retrains once per source with that source held out as the test split: the
honest figure for a model meeting a new lab or scanner. ``add_guard`` gives a format-1
artifact the out-of-scope guard (a new, format-2 artifact; the old one is untouched).
``ood_check`` measures what fraction of given image folders and of generated non-smears
the packaged guard flags.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifact import (
    VERIFICATION_IMAGES,
    ArtifactError,
    VerificationBatch,
    load_guard,
    load_packaged,
    write_artifact,
)
from training import data as data_mod

log = logging.getLogger("training")

# Older artifacts carry PNG figures, newer ones SVG: a repackaged artifact keeps either.
_FIGURE_SUFFIXES = (".svg", ".png")


def run_loso(cfg, out: Path) -> dict:
    """Train ``cfg`` once per source of its group CSV, testing on the held-out source."""
    from training.train import run_training

    if not cfg.groups:
        raise data_mod.DatasetError("leave-one-source-out needs --groups with a 'source' column")
    prepared = data_mod.prepare(
        Path(cfg.data_dir),
        seed=cfg.seed,
        label_map=data_mod.read_label_map(Path(cfg.label_map) if cfg.label_map else None),
        groups_csv=Path(cfg.groups),
    )
    sources = data_mod.sources_of(prepared)
    if len(sources) < 2:
        raise data_mod.DatasetError(
            f"the group CSV names {len(sources)} source(s); leave-one-source-out needs two"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for source in sources:
        held = data_mod.leave_one_source_out(prepared, source)
        t0 = time.monotonic()
        result = run_training(
            replace(
                cfg,
                name=f"{cfg.name or 'loso-' + cfg.arch}-without-{source}",
                version=cfg.version or "1",
            ),
            prepared=held,
            run_dir=out / f"without-{source}",
        )
        t = result.report["evaluation"]["test"]
        rows.append(
            {
                "held_out": source,
                "sizes": held.sizes(),
                "accuracy": t["accuracy"],
                "macro_f1": t["macro_f1"],
                "baselines": {k: v["accuracy"] for k, v in result.report["baselines"].items()},
                "ood_flagged_test": result.report["ood"]["flagged"]["test"],
                "seconds": time.monotonic() - t0,
                "run_dir": str(result.run_dir),
            }
        )
    summary = {
        "arch": cfg.arch,
        "sources": sources,
        "rows": rows,
        "mean_accuracy": float(np.mean([r["accuracy"] for r in rows])),
    }
    (out / "loso.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    lines = [
        "| held-out source | train / val / test | accuracy | macro F1 | colour baseline "
        "| flagged out of scope |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["sizes"]
        lines.append(
            f"| {r['held_out']} | {s['train']} / {s['validation']} / {s['test']} | "
            f"{r['accuracy']:.1%} | {r['macro_f1']:.3f} | "
            f"{r['baselines'].get('colour_stats', float('nan')):.1%} | "
            f"{r['ood_flagged_test']:.1%} |"
        )
    (out / "loso.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary


def add_guard(
    artifact: Path,
    *,
    run_dir: Path | None = None,
    out: Path,
    version: str | None = None,
    data_dir: Path | None = None,
) -> Path:
    """Fit the out-of-scope guard for an existing artifact on its run's split; repackage."""
    from training.evaluate_artifact import _load_checked
    from training.ood import fit_guard
    from training.train import color_recipe

    model, manifest = load_packaged(artifact)
    run_dir = Path(run_dir) if run_dir else Path(artifact).resolve().parent
    prepared = data_mod.PreparedData.load(run_dir / "split.json")
    if prepared.fingerprint != manifest.dataset_fingerprint:
        raise ArtifactError("the run's split does not belong to this model (fingerprints differ)")
    root = Path(data_dir or prepared.data_dir)
    size = manifest.input_size
    x_tr, y_tr = _load_checked(root, prepared.splits["train"], manifest.classes, size)
    x_va, _ = _load_checked(root, prepared.splits["validation"], manifest.classes, size)
    x_te, _ = _load_checked(
        root, prepared.splits["test"][:VERIFICATION_IMAGES], manifest.classes, size
    )
    recipe = color_recipe(_trained_color_augment(Path(artifact)))
    guard = fit_guard(
        model,
        x_tr,
        y_tr,
        x_va,
        len(manifest.classes),
        stain_augment=recipe is not None,
        recipe=recipe,
    )
    fields = {
        k: v
        for k, v in manifest.to_dict().items()
        if k not in ("content_hash", "format_version", "ood", "onnx", "int8")
    }
    fields["version"] = version or f"{manifest.version}-guard"
    fields["extra"] = {**manifest.extra, "guard_added_to": f"{manifest.name} {manifest.version}"}
    folder, _ = write_artifact(
        model,
        out,
        manifest_fields=fields,
        verification=VerificationBatch(
            x_te, f"the first {len(x_te)} images of the test split of the run's split"
        ),
        guard=guard,
        report_files=_report_files(Path(artifact)),
    )
    return folder


def _trained_color_augment(artifact: Path) -> str:
    """The colour recipe the artifact's report says it was trained with: ``strong``,
    ``light`` or ``none`` (reports from before issue #14 say ``stain_augment``)."""
    path = artifact / "report.json"
    config = (
        json.loads(path.read_text(encoding="utf-8")).get("config", {}) if path.is_file() else {}
    )
    if "color_augment" in config:
        return str(config["color_augment"])
    return "light" if config.get("stain_augment") else "none"


def _report_files(artifact: Path) -> list[Path]:
    """An artifact's report.json, report.html and figures, to carry into its successor."""
    figures = sorted(p for p in artifact.iterdir() if p.suffix in _FIGURE_SUFFIXES)
    return [artifact / "report.json", artifact / "report.html", *figures]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file() and p.suffix.lower() in data_mod.IMAGE_SUFFIXES
    )


def ood_check(
    artifact: Path,
    folders: Sequence[Path],
    *,
    per_kind: int = 100,
    seed: int = 0,
    run_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Flagged fraction and score quantiles per image folder and per generated non-smear kind.

    With ``run_dir`` the run's test split (real in-distribution smears) is checked too.
    """
    from runtime.preprocess import load_for_model
    from training.nonsmear import KINDS, generate
    from training.ood import FeatureExtractor, guard_facts, reason_counts

    model, manifest = load_packaged(artifact)
    guard = load_guard(artifact, manifest)
    if guard is None:
        raise ArtifactError(f"{artifact} has no out-of-scope guard (format 1): run add-guard")
    size = manifest.input_size
    sets: dict[str, np.ndarray] = {}
    if run_dir is not None:
        prepared = data_mod.PreparedData.load(Path(run_dir) / "split.json")
        sets["test split"] = data_mod.load_images(
            Path(prepared.data_dir), prepared.splits["test"], manifest.classes, size
        )[0]
    for folder in folders:
        files = _image_files(folder)
        sets[str(folder)] = (
            np.stack([load_for_model(f.read_bytes(), size) for f in files])
            if files
            else np.zeros((0, size, size, 3), np.uint8)
        )
    smears = sets.get("test split")
    for kind in KINDS:
        sets[f"generated {kind}"] = generate(kind, per_kind, size, seed=seed, smears=smears)
    rows: dict[str, dict[str, Any]] = {}
    extract = FeatureExtractor(model, guard.spec)
    for name, x in sets.items():
        t0 = time.monotonic()
        feats = extract(x)[0] if len(x) else None
        scores = guard.score(feats) if feats is not None else np.zeros(0)
        flags = scores > guard.threshold
        rows[name] = {
            "n": len(x),
            "flagged": int(flags.sum()),
            "rate": float(flags.mean()) if len(x) else 0.0,
            "score_median": float(np.median(scores)) if len(x) else None,
            "score_p05": float(np.quantile(scores, 0.05)) if len(x) else None,
            "reasons": reason_counts(guard.reasons(feats)) if feats is not None else {},
            "seconds": time.monotonic() - t0,
        }
        if progress:
            reasons = ", ".join(f"{k} {v}" for k, v in rows[name]["reasons"].items())
            progress(
                f"{name}: {rows[name]['flagged']}/{len(x)} flagged"
                + (f" ({reasons})" if reasons else "")
            )
    return {
        "artifact": str(artifact),
        "method": guard_facts(guard)["method"],
        "checks": guard_facts(guard)["checks"],
        "threshold": guard.threshold,
        "layer": guard.layer,
        "quantile": guard.quantile,
        "sets": rows,
    }
