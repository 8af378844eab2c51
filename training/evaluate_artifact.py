"""Re-evaluate a packaged model on the test split a training run saved (``evaluate``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from runtime.artifact import ArtifactError, load_guard, load_packaged, utc_now
from training import data as data_mod
from training.baselines import baseline_warning, run_baselines
from training.evaluate import full_evaluation

log = logging.getLogger(__name__)


def _load_checked(data_dir: Path, samples, classes, size) -> tuple[np.ndarray, np.ndarray]:
    """Decode a split, refusing files whose bytes changed since the split was made."""
    for s in samples:
        path = data_dir / s.path
        if not path.is_file():
            raise data_mod.DatasetError(f"{path} listed in the split is missing")
        if data_mod.file_sha256(path) != s.sha256:
            raise data_mod.DatasetError(f"{path} changed since the split was saved")
    return data_mod.load_images(data_dir, samples, classes, size)


def evaluate_artifact(
    artifact: Path,
    *,
    run_dir: Path | None = None,
    data_dir: Path | None = None,
    out: Path | None = None,
    review_target: float | None = None,
) -> tuple[Path, dict]:
    """Score ``artifact`` on its run's test split with the manifest's temperature/threshold.

    With ``review_target`` the threshold is re-chosen on validation for that target.
    """
    from training import report as report_mod
    from training.train import clinical_validity, predict

    model, manifest = load_packaged(artifact)
    guard = load_guard(artifact, manifest)
    run_dir = Path(run_dir) if run_dir else Path(artifact).resolve().parent
    split_path = run_dir / "split.json"
    if not split_path.is_file():
        raise ArtifactError(f"{split_path} not found: pass --run with the training run folder")
    prepared = data_mod.PreparedData.load(split_path)
    if prepared.fingerprint != manifest.dataset_fingerprint:
        raise ArtifactError("the run's split does not belong to this model (fingerprints differ)")
    if list(prepared.classes) != list(manifest.classes):
        raise ArtifactError("the run's classes differ from the model's")
    root = Path(data_dir or prepared.data_dir)
    size = manifest.input_size
    x_tr, y_tr = _load_checked(root, prepared.splits["train"], manifest.classes, size)
    x_va, y_va = _load_checked(root, prepared.splits["validation"], manifest.classes, size)
    x_te, y_te = _load_checked(root, prepared.splits["test"], manifest.classes, size)
    test_probs = predict(model, x_te)
    evaluation = full_evaluation(
        predict(model, x_va),
        y_va,
        test_probs,
        y_te,
        manifest.classes,
        temperature=manifest.temperature,
        threshold=None if review_target is not None else manifest.confidence_threshold,
        review_target=review_target,
    )
    baselines = run_baselines(x_tr, y_tr, x_te, y_te, seed=prepared.seed)
    out = Path(out or run_dir / f"evaluation-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"train": (x_tr, y_tr), "validation": (x_va, y_va), "test": (x_te, y_te)}
    validity = clinical_validity(
        model,
        list(manifest.classes),
        arrays,
        prepared.splits["test"],
        seed=prepared.seed,
        guard=guard,
    )
    validity.pop("guard")
    # A format-1 artifact has no guard: the one reported was fitted now, for the report only.
    validity["ood"]["packaged"] = guard is not None
    report = {
        "name": manifest.name,
        "version": manifest.version,
        "architecture": manifest.architecture,
        "classes": manifest.classes,
        "input_size": size,
        "created": utc_now(),
        "synthetic": manifest.synthetic,
        "content_hash": manifest.content_hash,
        "config": {"weights": manifest.extra.get("weights"), "seed": prepared.seed},
        "data": {k: v for k, v in prepared.to_json().items() if k != "splits"},
        "training": {},
        "baselines": baselines,
        "baseline_warning": baseline_warning(test_probs.argmax(axis=1), y_te, baselines),
        "evaluation": evaluation,
        **validity,
    }
    report["colour_blind"] = report_mod.colour_blind(report)
    report_mod.write_figures(report, out)
    report_mod.write_json(report, out / "report.json")
    report_mod.write_html(report, out / "report.html")
    return out, report
