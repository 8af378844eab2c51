"""The analysis of a case: what the ``inference.analyse_case`` task runs.

The deployed model (and the shadow, if any) classifies the case's images that it has
not predicted yet; predictions are stored, then the case-level answer
(``inference.case_result``) and the case's status follow, and the Grad-CAM overlays are
queued for a heatmap worker. The model runs on ONNX Runtime, imported late inside the
functions that need it; this worker never imports TensorFlow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from cases.models import Case, SmearImage
from inference.artifacts import predictor_for
from inference.case_result import case_answer
from inference.dispatch import case_heatmaps_request
from inference.models import CaseResult, ModelVersion, Prediction

logger = logging.getLogger(__name__)

# Images classified and stored together; a case's page shows each chunk as it is done.
# 16 is the case size docs/benchmarks.md measures: cases up to it still go through one
# compiled batch, and larger ones show their progress.
ANALYSIS_CHUNK = 16

IMAGE_MISSING = "The stored image file is missing, so it could not be analysed."
IMAGE_UNREADABLE = "The file could not be read as an image ({detail}). Please upload it again."
MODEL_UNAVAILABLE = (
    "The analysis model ({model}) could not be loaded ({detail}). An administrator has to "
    "deploy a working model; the image can then be analysed again."
)


@dataclass(frozen=True)
class AnalysisOutcome:
    case_id: int
    model_version: str | None
    predicted: int = 0
    failed: int = 0
    shadow_predicted: int = 0
    note: str = ""


def _images_claim(case_id: int, version: ModelVersion) -> list[SmearImage]:
    """Lock the case and mark the images this version has not predicted yet as analysing.

    Images left ANALYSING by a killed worker are claimed again; FAILED ones are final; a
    draft case's images wait until it is submitted.
    """
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        if case.status == Case.Status.DRAFT:
            return []  # not submitted: its clinician may still add or change images
        images = list(
            case.images.select_for_update()
            .exclude(status=SmearImage.Status.FAILED)
            .exclude(predictions__model_version=version)
        )
        if images:
            SmearImage.objects.filter(pk__in=[i.pk for i in images]).update(
                status=SmearImage.Status.ANALYSING, status_changed=timezone.now()
            )
            if case.status != Case.Status.REVIEWED:
                case.status = Case.Status.ANALYSING
                case.save(update_fields=["status", "updated"])
    return images


def _upload_bytes(image: SmearImage) -> bytes:
    """The upload's bytes from storage; FileNotFoundError is final, other OSErrors retry."""
    with image.file.open("rb") as fh:
        return fh.read()


def _classify(predictor, blobs: dict[int, bytes]):
    """Prepare and classify; return ({image pk: answer}, {image pk: failure}, ms per image)."""
    from runtime.preprocess import ImageDecodeError

    arrays, failures = {}, {}
    for pk, prepared in zip(blobs, predictor.prepare_many(list(blobs.values())), strict=True):
        if isinstance(prepared, ImageDecodeError):
            failures[pk] = IMAGE_UNREADABLE.format(detail=prepared)
        else:
            arrays[pk] = prepared
    answers, ms = predictor.predict(list(arrays.values()))
    per_image = ms / len(answers) if answers else 0.0
    return dict(zip(arrays, answers, strict=True)), failures, per_image


def _prediction_rows(version, answers, per_image_ms, worker_host) -> list[Prediction]:
    return [
        Prediction(
            image_id=pk,
            model_version=version,
            probabilities=answer.probabilities,
            label=answer.label,
            confidence=answer.confidence,
            inference_ms=per_image_ms,
            worker_host=worker_host,
            ood_score=answer.ood_score,
            out_of_scope=answer.out_of_scope,
        )
        for pk, answer in answers.items()
    ]


def case_result_refresh(*, case: Case, model_version: ModelVersion, primary: bool) -> CaseResult:
    """Store a version's case-level answer, recomputed from its predictions."""
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


def _case_status_refresh(case: Case) -> None:
    statuses = list(case.images.values_list("status", "failure_reason"))
    if case.status == Case.Status.REVIEWED or not statuses:
        return
    pending = {SmearImage.Status.PENDING, SmearImage.Status.ANALYSING}
    failed = [reason for status, reason in statuses if status == SmearImage.Status.FAILED]
    if any(status in pending for status, _ in statuses):
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


def _predictions_store(case_id, version, shadow, rows, failures) -> None:
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        # A concurrent or re-delivered task may have stored the same (image, version):
        # the unique constraint keeps the first, and this one adds nothing.
        Prediction.objects.bulk_create(rows, ignore_conflicts=True)
        done = {r.image_id for r in rows if r.model_version_id == version.pk}
        now = timezone.now()
        SmearImage.objects.filter(pk__in=done).update(
            status=SmearImage.Status.DONE, failure_reason="", status_changed=now
        )
        for pk, reason in failures.items():
            SmearImage.objects.filter(pk=pk).update(
                status=SmearImage.Status.FAILED, failure_reason=reason, status_changed=now
            )
        if Prediction.objects.filter(image__case=case, model_version=version).exists():
            case_result_refresh(case=case, model_version=version, primary=True)
        if shadow and Prediction.objects.filter(image__case=case, model_version=shadow).exists():
            case_result_refresh(case=case, model_version=shadow, primary=False)
        _case_status_refresh(case)


def _case_images_fail(case_id: int, reason: str) -> int:
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        count = (
            case.images.filter(status__in=[SmearImage.Status.PENDING, SmearImage.Status.ANALYSING])
            .exclude(predictions__isnull=False)
            .update(
                status=SmearImage.Status.FAILED,
                failure_reason=reason,
                status_changed=timezone.now(),
            )
        )
        _case_status_refresh(case)
    return count


def case_analyse(*, case_id: int, worker_host: str) -> AnalysisOutcome:
    """Classify a case's not-yet-predicted images with the deployed model (and the shadow).

    Idempotent: images this version already predicted are skipped, and the unique
    constraint stops a duplicate from any concurrent run. The model is loaded (and warmed
    up) before the case is claimed, so no row is locked while TensorFlow works on a load.
    """
    from runtime.artifact import ArtifactError

    version = ModelVersion.objects.deployed()
    if version is None:
        logger.warning("case %s: no model is deployed; the sweep will queue it again", case_id)
        return AnalysisOutcome(case_id, None, note="no model deployed")
    if not Case.objects.filter(pk=case_id).exists():
        return AnalysisOutcome(case_id, str(version), note="no such case")
    try:
        predictor = predictor_for(version)
    except (ArtifactError, FileNotFoundError) as exc:
        logger.error("case %s: model %s cannot be loaded: %s", case_id, version, exc)
        failed = _case_images_fail(case_id, MODEL_UNAVAILABLE.format(model=version, detail=exc))
        return AnalysisOutcome(case_id, str(version), failed=failed, note="model unavailable")

    images = _images_claim(case_id, version)
    if not images:
        return AnalysisOutcome(case_id, str(version), note="nothing to analyse")
    shadow = ModelVersion.objects.shadow()
    predicted = failed = shadow_predicted = 0
    # Stored a chunk at a time, so the case page shows images finishing while the rest
    # are still being classified.
    for start in range(0, len(images), ANALYSIS_CHUNK):
        chunk_blobs, failures = {}, {}
        for image in images[start : start + ANALYSIS_CHUNK]:
            try:
                chunk_blobs[image.pk] = _upload_bytes(image)
            except FileNotFoundError:
                failures[image.pk] = IMAGE_MISSING
        answers, unreadable, per_image_ms = _classify(predictor, chunk_blobs)
        failures.update(unreadable)
        rows = _prediction_rows(version, answers, per_image_ms, worker_host)
        shadow_rows = (
            _shadow_rows(shadow, answers, chunk_blobs, worker_host) if shadow is not None else []
        )
        _predictions_store(case_id, version, shadow, rows + shadow_rows, failures)
        predicted, failed = predicted + len(rows), failed + len(failures)
        shadow_predicted += len(shadow_rows)
    if predicted and settings.INFERENCE_HEATMAPS:
        # After the commit: a heatmap worker must find the predictions it explains.
        transaction.on_commit(lambda: case_heatmaps_request(case_id, version.pk))
    return AnalysisOutcome(
        case_id,
        str(version),
        predicted=predicted,
        failed=failed,
        shadow_predicted=shadow_predicted,
    )


def _shadow_rows(shadow, answers, blobs, worker_host) -> list[Prediction]:
    """The shadow model's predictions for the same images; its trouble never fails a case."""
    from runtime.artifact import ArtifactError

    todo = {
        pk: blobs[pk]
        for pk in answers
        if not Prediction.objects.filter(image_id=pk, model_version=shadow).exists()
    }
    if not todo:
        return []
    try:
        predictor = predictor_for(shadow)
        shadow_answers, _, per_image_ms = _classify(predictor, todo)
    except (ArtifactError, FileNotFoundError) as exc:
        logger.error("shadow model %s cannot be loaded, skipped: %s", shadow, exc)
        return []
    return _prediction_rows(shadow, shadow_answers, per_image_ms, worker_host)


def deployed_model_preload() -> None:
    """Load and warm the deployed and shadow models now, so the first case waits for neither.

    Best effort, run in the background of a new worker process: whatever goes wrong here
    is logged, and the first task that needs the model loads it again and reports properly.
    """
    try:
        for version in (ModelVersion.objects.deployed(), ModelVersion.objects.shadow()):
            if version is not None:
                predictor_for(version)
                logger.info("preloaded model %s", version)
    except Exception:
        logger.exception("could not preload the deployed model")
    finally:
        connection.close()
