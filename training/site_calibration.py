"""Site calibration: a new model version whose BatchNorm statistics come from a site's images.

A lab whose stain, scanner or camera differs from the training set shifts the
activations every BatchNorm layer normalises. Re-estimating those layers' moving means
and variances on the site's own unlabelled images (AdaBN, Li et al. 2016, "Revisiting
batch normalization for practical domain adaptation") realigns them with the training
data's, with no label and no weight change. The calibrated model is packaged as a NEW
artifact: its own version, manifest lineage (``calibrated_from``), ONNX graph verified
against it, and evaluation; the original artifact is only read.

The out-of-scope guard is carried over unchanged: after calibration the site's
activations are normalised as the training data's were, so the distances to the
training data's class means are measured in the same space; the input-level checks do
not depend on the model at all. The verification batch is generated smears
(``training.synth``), never the site's images, which may be patient data.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.artifact import (
    ArtifactError,
    VerificationBatch,
    load_guard,
    load_packaged,
    sha256_file,
    utc_now,
    write_artifact,
)
from training import data as data_mod

log = logging.getLogger(__name__)

#: Fewer images than this give BatchNorm statistics too noisy to trust.
MIN_IMAGES = 32
_CARRIED = ("report.html", "confusion_matrix.svg", "reliability.svg", "robustness.svg")


def site_images(folder: Path, size: int) -> tuple[np.ndarray, list[str]]:
    """Every decodable image under ``folder`` (any depth) at the model's input size, and
    the names of the files that could not be decoded."""
    from runtime.preprocess import ImageDecodeError, load_for_model

    images, bad = [], []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix.lower() not in data_mod.IMAGE_SUFFIXES:
            continue
        try:
            images.append(load_for_model(path.read_bytes(), size))
        except ImageDecodeError:
            bad.append(path.name)
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), bad
    return np.stack(images), bad


def _labelled(folder: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """A labelled folder (one sub-folder per class, named as the model's classes)."""
    samples = [s for s in data_mod.scan_folder(Path(folder)) if s.label in classes]
    if not samples:
        raise data_mod.DatasetError(
            f"{folder} has no sub-folder named after the model's classes ({', '.join(classes)})"
        )
    return data_mod.load_images(Path(folder), samples, classes, size)


def _scores(model, guard, x: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
    """Accuracy (with labels) and the guard's flagged fraction of ``x``."""
    from training.ood import FeatureExtractor

    if guard is not None:
        feats, probs = FeatureExtractor(model, guard.spec)(x)
        flagged: float | None = float(guard.flag(feats).mean()) if len(x) else 0.0
    else:
        from training.train import predict

        probs, flagged = predict(model, x), None
    out: dict[str, Any] = {"n": len(x), "out_of_scope": flagged}
    if y is not None:
        from sklearn.metrics import f1_score

        pred = probs.argmax(axis=1)
        out["accuracy"] = float((pred == y).mean()) if len(y) else None
        out["macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0))
    return out


def site_calibrate(
    artifact: Path,
    site_folder: Path,
    *,
    out: Path,
    version: str | None = None,
    site: str | None = None,
    labelled: Path | None = None,
    batch_size: int = 32,
) -> tuple[Path, dict[str, Any]]:
    """Package ``artifact`` with BatchNorm statistics re-estimated on ``site_folder``.

    ``labelled`` (one sub-folder per class) is scored before and after; the facts go
    into the new artifact's ``report.json`` (``site_calibration``) and are returned.
    """
    from training.train import recompute_batchnorm

    t0 = time.monotonic()
    original_hash = sha256_file(Path(artifact) / "model.keras")
    model, manifest = load_packaged(artifact)
    guard = load_guard(artifact, manifest)
    size = manifest.input_size
    x_site, undecodable = site_images(site_folder, size)
    if len(x_site) < MIN_IMAGES:
        raise ArtifactError(
            f"{site_folder}: {len(x_site)} decodable images; site calibration needs at least "
            f"{MIN_IMAGES} of the site's smears"
        )
    x_lab, y_lab = (None, None) if labelled is None else _labelled(labelled, manifest.classes, size)
    before_site = _scores(model, guard, x_site, None)
    before = None if x_lab is None else _scores(model, guard, x_lab, y_lab)
    layers = recompute_batchnorm(model, x_site, batch_size)
    if not layers:
        raise ArtifactError(
            f"{manifest.name} {manifest.version} has no BatchNorm layer to re-estimate"
        )
    after_site = _scores(model, guard, x_site, None)
    after = None if x_lab is None else _scores(model, guard, x_lab, y_lab)
    site = site or Path(site_folder).name
    facts: dict[str, Any] = {
        "method": "batchnorm",
        "calibrated_from": {
            "name": manifest.name,
            "version": manifest.version,
            "content_hash": manifest.content_hash,
        },
        "site": site,
        "images": len(x_site),
        "undecodable": undecodable,
        "batchnorm_layers": layers,
        "site_flagged_before": before_site["out_of_scope"],
        "site_flagged_after": after_site["out_of_scope"],
        "labelled": None
        if before is None or after is None
        else {"folder": Path(labelled or "").name, "before": before, "after": after},
        "created": utc_now(),
    }
    report = _original_report(Path(artifact))
    report["site_calibration"] = facts
    report["version"] = version or f"{manifest.version}-{_slug(site)}"
    scratch = Path(out) / f".{manifest.name}-{report['version']}.report"
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    fields = {
        k: v
        for k, v in manifest.to_dict().items()
        if k not in ("content_hash", "format_version", "ood", "onnx", "int8", "created")
    }
    fields["version"] = report["version"]
    fields["extra"] = {
        **manifest.extra,
        "calibrated_from": f"{manifest.name} {manifest.version}",
        "site_calibration": {k: v for k, v in facts.items() if k != "labelled"},
    }
    if after is not None:
        fields["extra"]["site_calibration"]["labelled_accuracy"] = {
            "before": before and before["accuracy"],
            "after": after["accuracy"],
        }
    folder, _ = write_artifact(
        model,
        out,
        manifest_fields=fields,
        verification=_generated_batch(size),
        guard=guard,
        report_files=[
            scratch / "report.json",
            *(Path(artifact) / n for n in _CARRIED if (Path(artifact) / n).is_file()),
        ],
    )
    (scratch / "report.json").unlink()
    scratch.rmdir()
    if sha256_file(Path(artifact) / "model.keras") != original_hash:  # pragma: no cover
        raise ArtifactError(f"{artifact} changed during calibration")
    facts["seconds"] = time.monotonic() - t0
    log.info("site calibration of %s on %d images: %s", manifest.version, len(x_site), folder)
    return folder, facts


def _generated_batch(size: int) -> VerificationBatch:
    """Generated smears (``training.synth``, seed 0) to verify the ONNX graph on."""
    from runtime.artifact import VERIFICATION_IMAGES
    from training.synth import DEMO_CLASSES, generate

    per_class = -(-VERIFICATION_IMAGES // len(DEMO_CLASSES))
    images, _ = generate(DEMO_CLASSES, per_class=per_class, size=size, seed=0)
    return VerificationBatch(
        images[:VERIFICATION_IMAGES],
        f"{VERIFICATION_IMAGES} generated smears (training.synth, seed 0): the site's images "
        "stay at the site",
    )


def _original_report(artifact: Path) -> dict[str, Any]:
    path = artifact / "report.json"
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return f"site-{keep[:30] or 'calibrated'}"
