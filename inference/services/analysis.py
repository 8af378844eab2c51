"""The analysis of a case: what the ``inference.analyse_case`` task runs.

The case's model version (the one deployed when it was submitted) and the shadow, if
any, classify the case's images that they have not predicted yet; predictions are
stored, then the case-level answer (``inference.case_result``) and the case's status
follow, and the Grad-CAM overlays are queued for a heatmap worker. The model runs on
ONNX Runtime, imported late inside the functions that need it; this worker never imports
TensorFlow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from cases.models import Case, SmearImage
from inference.artifacts import predictor_for
from inference.dispatch import case_heatmaps_request
from inference.models import HeatmapState, ModelVersion, Prediction
from inference.selectors import case_analysis_version
from inference.services.claims import images_claim, images_release, lease_kept
from inference.services.results import (
    WAITING,
    case_answer_refresh,
    case_result_refresh,
    case_status_refresh,
)
from inference.services.versions import case_analysis_pin

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


def _prediction_rows(version, answers, per_image_ms, worker_host, *, shadow=False):
    """Unsaved predictions; the case's own have their heatmap pending (for a heatmap
    worker), or impossible with the reason when heatmaps are off; a shadow's get none."""
    from inference.services.heatmaps import HEATMAPS_OFF, SHADOW_MODEL

    now = timezone.now()
    refused = SHADOW_MODEL if shadow else "" if settings.INFERENCE_HEATMAPS else HEATMAPS_OFF
    state = HeatmapState.IMPOSSIBLE if refused else HeatmapState.PENDING
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
            ood_reason=answer.ood_reason,
            heatmap_state=state,
            heatmap_reason=refused,
            heatmap_changed=now,
        )
        for pk, answer in answers.items()
    ]


def _predictions_store(case_id, version, shadow, rows, failures) -> None:
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        # A concurrent or re-delivered task may have stored the same (image, version):
        # the unique constraint keeps the first, and this one adds nothing.
        Prediction.objects.bulk_create(rows, ignore_conflicts=True)
        target = case_analysis_version(case_id=case_id)
        if target is not None and target.pk == version.pk:
            # An image is done once the case's version has predicted it, whoever stored
            # that; a run whose version the case no longer uses changes no status.
            now = timezone.now()
            waiting = case.images.filter(status__in=WAITING)
            waiting.filter(predictions__model_version=version).update(
                status=SmearImage.Status.DONE,
                failure_reason="",
                status_changed=now,
                claimed_by="",
                lease_expires=None,
            )
            for pk, reason in failures.items():
                waiting.filter(pk=pk).update(
                    status=SmearImage.Status.FAILED,
                    failure_reason=reason,
                    status_changed=now,
                    claimed_by="",
                    lease_expires=None,
                )
        case_answer_refresh(case=case, model_version=version)
        if shadow and Prediction.objects.filter(image__case=case, model_version=shadow).exists():
            case_result_refresh(case=case, model_version=shadow, primary=False)
        case_status_refresh(case)


def _case_images_fail(case_id: int, version: ModelVersion, reason: str) -> int:
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        count = (
            case.images.filter(status__in=WAITING)
            .exclude(predictions__model_version=version)
            .update(
                status=SmearImage.Status.FAILED,
                failure_reason=reason,
                status_changed=timezone.now(),
                claimed_by="",
                lease_expires=None,
            )
        )
        case_status_refresh(case)
    return count


def case_analyse(*, case_id: int, worker_host: str, holder: str = "") -> AnalysisOutcome:
    """Classify a case's not-yet-predicted images with the case's model version (the one
    deployed when it was submitted, inference.services.versions) and the shadow.

    Idempotent: images this version already predicted are skipped, images another live
    worker has claimed are left to it, and the unique constraint stops a duplicate from
    any concurrent run. The model is loaded (and warmed up) before the case is claimed, so
    no row is locked while TensorFlow works on a load; the claims are renewed while the
    work goes on, so they lapse quickly if this process dies.
    """
    from runtime.artifact import ArtifactError

    if not Case.objects.filter(pk=case_id).exists():
        return AnalysisOutcome(case_id, None, note="no such case")
    version = case_analysis_pin(case_id=case_id)
    if version is None:
        logger.warning("case %s: no model is deployed; the sweep will queue it again", case_id)
        return AnalysisOutcome(case_id, None, note="no model deployed")
    try:
        predictor = predictor_for(version)
    except (ArtifactError, FileNotFoundError) as exc:
        logger.error("case %s: model %s cannot be loaded: %s", case_id, version, exc)
        reason = MODEL_UNAVAILABLE.format(model=version, detail=exc)
        failed = _case_images_fail(case_id, version, reason)
        return AnalysisOutcome(case_id, str(version), failed=failed, note="model unavailable")

    holder = holder or f"{worker_host}:{os.getpid()}"
    images = images_claim(case_id=case_id, version=version, holder=holder)
    if not images:
        return AnalysisOutcome(case_id, str(version), note="nothing to analyse")
    claimed = [image.pk for image in images]
    try:
        with lease_kept(SmearImage, claimed, holder):
            return _images_analyse(case_id, version, predictor, images, worker_host)
    except BaseException:
        images_release(claimed, holder)
        raise


def _images_analyse(case_id, version, predictor, images, worker_host) -> AnalysisOutcome:
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
    return _prediction_rows(shadow, shadow_answers, per_image_ms, worker_host, shadow=True)


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
