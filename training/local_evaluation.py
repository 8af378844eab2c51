"""Local evaluation: how a model does on a site's own labelled images, before it serves.

A model's training report speaks for its training data. A site's stain, scanner and
patients differ (docs/clinical-validity.md measures how much that can cost), so an
administrator checks a candidate on labelled local images first. Django-free, like the
rest of ``training``: a Predictor and a class-per-folder path in, a JSON-able dict out.
The images go through the worker's own path (decode, compiled batch, calibration, guard);
the registry (``inference.services``) runs it and stores the result.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from runtime.calibration import apply_temperature
from runtime.predictor import Predictor
from runtime.preprocess import ImageDecodeError
from training.baselines import colour_baseline_cv, colour_features, mcnemar_p
from training.data import DatasetError, dataset_fingerprint, deduplicate, scan_folder
from training.evaluate import classification_metrics, reliability, review_stats

__all__ = ["evaluate_folder"]

# Images read, decoded and classified at a time: bounds memory on a large set.
CHUNK = 64
# Unreadable files named in the result; the count covers all of them.
UNREADABLE_LISTED = 20


def evaluate_folder(
    predictor: Predictor,
    data_dir: Path | str,
    *,
    label_map: dict[str, str] | None = None,
    seed: int = 0,
) -> dict:
    """Score the predictor on every image under ``data_dir/<class>/`` (de-duplicated).

    Raises DatasetError when the folder holds no images or names a class the model does
    not have. Files that do not decode are left out and listed.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    dedup = deduplicate(scan_folder(data_dir, label_map))
    classes = list(predictor.classes)
    unknown = sorted({s.label for s in dedup.samples} - set(classes))
    if unknown:
        raise DatasetError(
            f"{', '.join(unknown)}: not among the model's classes ({', '.join(classes)}); "
            "rename the folders or give a label map"
        )
    index = {c: i for i, c in enumerate(classes)}
    raw, scores, colour, unreadable = [], [], [], []
    labels: list[int] = []
    for start in range(0, len(dedup.samples), CHUNK):
        chunk = dedup.samples[start : start + CHUNK]
        prepared = predictor.prepare_many([(data_dir / s.path).read_bytes() for s in chunk])
        readable = []
        for sample, array in zip(chunk, prepared, strict=True):
            if isinstance(array, ImageDecodeError):
                unreadable.append(f"{sample.path}: {array}")
            else:
                readable.append((sample, array))
        if not readable:
            continue
        batch = np.stack([array for _, array in readable])
        probs, ood = predictor.scored(batch)
        raw.append(probs)
        if ood is not None:
            scores.append(ood)
        colour.append(colour_features(batch))
        labels += [index[sample.label] for sample, _ in readable]
    if not labels:
        raise DatasetError(f"none of the images in {data_dir} could be decoded")

    y = np.asarray(labels)
    probs = apply_temperature(np.concatenate(raw), predictor.temperature)
    correct = probs.argmax(axis=1) == y
    metrics = classification_metrics(probs, y, classes)
    present = sorted(set(y.tolist()))
    # Macro averages over the model's classes would count absent classes as zeros.
    metrics["macro_f1_present"] = float(
        np.mean([metrics["per_class"][classes[i]]["f1"] for i in present])
    )
    baseline = colour_baseline_cv(np.concatenate(colour), y, seed=seed)
    if "predictions" in baseline:
        baseline["mcnemar_p"] = mcnemar_p(correct, np.asarray(baseline.pop("predictions")) == y)
    out_of_scope = None
    if scores:
        assert predictor.guard is not None  # scored() returns scores only with a guard
        flagged = np.concatenate(scores) > predictor.guard.threshold
        out_of_scope = {
            "threshold": float(predictor.guard.threshold),
            "fraction": float(flagged.mean()),
            "in_scope_accuracy": float(correct[~flagged].mean()) if (~flagged).any() else None,
        }
    return {
        "data_dir": str(data_dir),
        "fingerprint": dataset_fingerprint(dedup.samples),
        "n": len(y),
        "classes_present": [classes[i] for i in present],
        "duplicates_dropped": dedup.duplicates,
        "conflicts_dropped": len(dedup.conflicts),
        "unreadable_count": len(unreadable),
        "unreadable": unreadable[:UNREADABLE_LISTED],
        "metrics": metrics,
        "ece": reliability(probs, y)["ece"],
        "review": review_stats(probs, y, predictor.confidence_threshold),
        "out_of_scope": out_of_scope,
        "colour_baseline": baseline,
        "seconds": time.perf_counter() - started,
    }
