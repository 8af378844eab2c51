"""What the registry's pages show, assembled from selectors and the stored reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from accounts.models import User
from inference import selectors as inference_selectors
from inference.models import ModelEvaluation, ModelVersion, Variant
from registry import selectors
from registry.report import comparison_row, report_sections
from reviews.presenters import agreement_panel
from training.charts import heat_rows
from training.report import local_evaluation_warnings, reported_test_accuracy

# Registry changes, by the name in their URL: the button's title, whether the version
# then serves new cases (and the confirmation shows its latest local evaluation).
ACTIONS = {
    "deploy": ("Deploy", True),
    "shadow": ("Set as shadow", True),
    "retire": ("Retire", False),
}


def list_page(*, user: User) -> dict[str, Any]:
    versions = list(selectors.registry_list(user=user))
    # The templates read these as attributes of the records (mypy knows only the fields).
    for version in versions:
        test = (version.report.get("evaluation") or {}).get("test") or {}
        version.test = test  # type: ignore[attr-defined]
    return {
        "versions": versions,
        "events": selectors.deployment_event_list(user=user)[:50],
        "previous": inference_selectors.model_version_previous(),
    }


def local_evaluations(*, user: User, version: ModelVersion) -> list[ModelEvaluation]:
    """The version's local evaluations, newest first; the finished ones with their
    warnings, the newest finished one also with its confusion matrix."""
    reported = reported_test_accuracy(version.report)
    evaluations = selectors.evaluation_list(user=user, model_version=version)
    done = [e for e in evaluations if e.status == ModelEvaluation.Status.DONE]
    # The templates read these as attributes of the records (mypy knows only the fields).
    for evaluation in evaluations:
        # The set by its folder's name, as the form offered it; the full path in a title.
        evaluation.set_name = Path(evaluation.dataset).name  # type: ignore[attr-defined]
    for evaluation in done:
        evaluation.warnings = local_evaluation_warnings(  # type: ignore[attr-defined]
            evaluation.result, reported
        )
    if done:
        done[0].confusion = heat_rows(  # type: ignore[attr-defined]
            done[0].result["metrics"]["confusion_matrix"], list(version.classes)
        )
    return evaluations


def latest_done(evaluations: list[ModelEvaluation]) -> ModelEvaluation | None:
    return next((e for e in evaluations if e.status == ModelEvaluation.Status.DONE), None)


def evaluations_panel(*, user: User, version: ModelVersion) -> dict[str, Any]:
    """The local-evaluations table and the latest confusion matrix; ``active`` while one
    is still queued, so that the page keeps polling for it."""
    evaluations = local_evaluations(user=user, version=version)
    return {
        "version": version,
        "evaluations": evaluations,
        "latest_evaluation": latest_done(evaluations),
        "active": any(e.status == ModelEvaluation.Status.PENDING for e in evaluations),
    }


def _done_by_set(user: User, version: ModelVersion) -> dict[str, ModelEvaluation]:
    """The newest finished local evaluation of each labelled set (by its fingerprint)."""
    by_set: dict[str, ModelEvaluation] = {}
    for e in selectors.evaluation_list(user=user, model_version=version):
        if e.status == ModelEvaluation.Status.DONE and e.dataset_fingerprint:
            by_set.setdefault(e.dataset_fingerprint, e)
    return by_set


def calibration_panel(*, user: User, version: ModelVersion) -> dict[str, Any] | None:
    """Site calibration: the version it was calibrated from or the versions calibrated
    from it, what the calibration measured, and the accuracy before and after on every
    labelled set that both versions were evaluated on locally. None when unrelated."""
    parent = selectors.calibration_parent(user=user, version=version)
    children = selectors.calibration_children(user=user, version=version)
    facts = version.report.get("site_calibration") if isinstance(version.report, dict) else None
    if parent is None and not children and not facts:
        return None
    pairs = [(parent, version)] if parent is not None else [(version, c) for c in children]
    rows = []
    for before, after in pairs:
        if before is None:
            continue
        old, new = _done_by_set(user, before), _done_by_set(user, after)
        for fingerprint, e_after in new.items():
            e_before = old.get(fingerprint)
            if e_before is None:
                continue
            rows.append(
                {
                    "set": Path(e_after.dataset).name,
                    "images": e_after.images_count,
                    "before_version": before,
                    "after_version": after,
                    "before": e_before.accuracy,
                    "after": e_after.accuracy,
                    "before_oos": (e_before.result.get("out_of_scope") or {}).get("fraction"),
                    "after_oos": (e_after.result.get("out_of_scope") or {}).get("fraction"),
                }
            )
    return {"parent": parent, "children": children, "facts": facts, "rows": rows}


def actions_for(version: ModelVersion) -> list[tuple[str, str]]:
    """The registry changes that the version's status allows (the services re-check)."""
    status = ModelVersion.Status
    allowed: dict[str, tuple[str, ...]] = {
        status.REGISTERED: ("deploy", "shadow", "retire"),
        status.SHADOW: ("deploy", "retire"),
    }
    return [(name, ACTIONS[name][0]) for name in allowed.get(version.status, ())]


def runtime_panel(version: ModelVersion) -> dict[str, Any]:
    """How the analysis workers run the version: its verified ONNX graph, and the fp32
    and int8 variants' figures on the test split, with the one that serves."""
    onnx = version.manifest.get("onnx") or {}
    int8 = version.int8
    reported = reported_test_accuracy(version.report)
    variants = [
        {
            "name": Variant.FP32,
            "accuracy": int8.get("fp32_accuracy", reported),
            "agreement": 1.0,
            "verdict": "verified equal to the Keras model" if onnx else "no ONNX graph",
            "available": bool(onnx),
        },
        {
            "name": Variant.INT8,
            "accuracy": int8.get("accuracy"),
            "agreement": int8.get("agreement"),
            "verdict": {
                "accepted": "accepted: within the accuracy limits",
                "refused": f"refused: {int8.get('reason', '')}",
            }.get(int8.get("status", ""), "not made (train with --int8)"),
            "available": version.int8_available,
        },
    ]
    verified = (onnx.get("verification") or {}).get("max_abs_diff")
    return {
        "onnx": onnx,
        "max_diff": "-" if verified is None else f"{verified:.1e}",
        "int8": int8,
        "variants": variants,
        "serving": version.variant,
        "choices": [v["name"] for v in variants if v["available"] and v["name"] != version.variant],
    }


def detail_page(*, user: User, version: ModelVersion) -> dict[str, Any]:
    """The version's report beside the other versions, live agreement and history."""
    comparison = [
        row
        for row in (comparison_row(v.report, str(v)) for v in selectors.registry_list(user=user))
        if row is not None
    ]
    live_versions = [version] + [
        v
        for v in (ModelVersion.objects.deployed(), ModelVersion.objects.shadow())
        if v is not None and v.pk != version.pk
    ]
    return {
        **evaluations_panel(user=user, version=version),
        "version": version,
        "report": report_sections(version.report),
        "comparison": comparison,
        "live": [agreement_panel(user=user, version=v) for v in live_versions],
        "events": version.events.select_related("actor").order_by("-created", "-pk"),
        "actions": actions_for(version),
        "runtime": runtime_panel(version),
        "calibration": calibration_panel(user=user, version=version),
        "evaluation_sets": inference_selectors.evaluation_sets(),
        "evaluation_root": settings.EVALUATION_DATA_ROOT,
    }
