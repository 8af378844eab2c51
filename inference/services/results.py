"""A case's answers and status, recomputed from its stored predictions; and the rule for
which answer is the case's.

The case's answer (the primary CaseResult, the one pages and the API show) is made by
the model version the case is analysed with (inference.models.CaseAnalysis): the version
deployed when it was submitted, or one an administrator asked for since. While the
case's first analysis runs, its answer fills in image by image; a re-analysis replaces
the answer shown only once it has every image. Nothing else changes it: not a deploy,
not a rollback, not a stray message, not a shadow model.
"""

from __future__ import annotations

from cases.models import Case, SmearImage
from inference.case_result import case_answer
from inference.models import CaseResult, ModelVersion, Prediction
from inference.selectors import case_analysis_version

WAITING = (SmearImage.Status.PENDING, SmearImage.Status.ANALYSING)


def case_result_refresh(*, case: Case, model_version: ModelVersion, primary: bool) -> CaseResult:
    """Store a version's case-level answer, recomputed from its predictions; when it is to
    be the case's answer, the one shown before steps down in the same transaction."""
    predictions = list(
        Prediction.objects.filter(image__case=case, model_version=model_version).exclude(
            image__status=SmearImage.Status.FAILED
        )
    )
    answer = case_answer(
        predictions,
        classes=model_version.classes,
        threshold=float(model_version.manifest.get("confidence_threshold", 0.0)),
    )
    if primary:
        # Saved row by row (at most one), not updated in bulk: the result's field history
        # keeps when it stopped being the case's answer.
        for shown in CaseResult.objects.filter(case=case, primary=True).exclude(
            model_version=model_version
        ):
            shown.primary = False
            shown.save(update_fields=["primary"])
    result, _ = CaseResult.objects.update_or_create(
        case=case,
        model_version=model_version,
        defaults={
            "label": answer.label,
            "confidence": answer.confidence,
            "probabilities": answer.probabilities,
            "needs_review": answer.needs_review,
            "images_count": answer.images_count,
            "out_of_scope_count": answer.out_of_scope_count,
            "primary": primary,
        },
    )
    return result


def result_is_primary(*, case: Case, model_version: ModelVersion) -> bool:
    """Whether this version's result is to be the case's answer (the rule above)."""
    target = case_analysis_version(case_id=case.pk)
    if target is None or target.pk != model_version.pk:
        return False
    shown = CaseResult.objects.filter(case=case, primary=True).first()
    if shown is None or shown.model_version_id == model_version.pk:
        return True
    return not (
        case.images.exclude(status=SmearImage.Status.FAILED)
        .exclude(predictions__model_version=model_version)
        .exists()
    )


def case_answer_refresh(*, case: Case, model_version: ModelVersion) -> None:
    """Recompute the version's result for the case, primary or not as the rule says."""
    if Prediction.objects.filter(image__case=case, model_version=model_version).exists():
        primary = result_is_primary(case=case, model_version=model_version)
        case_result_refresh(case=case, model_version=model_version, primary=primary)


def case_status_refresh(case: Case) -> None:
    """The case's status and reason, from its images' (a signed-off case keeps its own)."""
    statuses = list(case.images.values_list("status", "failure_reason"))
    if case.status == Case.Status.REVIEWED or not statuses:
        return
    failed = [reason for status, reason in statuses if status == SmearImage.Status.FAILED]
    if any(status in WAITING for status, _ in statuses):
        case.status, case.failure_reason = Case.Status.ANALYSING, ""
    elif len(failed) == len(statuses):
        case.status = Case.Status.FAILED
        case.failure_reason = failed[0] if len(set(failed)) == 1 else "; ".join(sorted(set(failed)))
    else:
        case.status = Case.Status.ANALYSED
        case.failure_reason = (
            f"{len(failed)} of {len(statuses)} images could not be analysed." if failed else ""
        )
    case.save(update_fields=["status", "failure_reason", "updated"])
