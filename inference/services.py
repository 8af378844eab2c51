"""Writes for the model registry and for predictions.

Registry: import (validated, all or nothing), deploy, roll back, shadow, retire; each
change is a DeploymentEvent and an audit entry. Analysis: ``case_analyse`` is what the
``inference.analyse_case`` task runs. TensorFlow is imported late, inside the functions
that need it, so web processes and the worker's parent process start without it.

Case result rule: the mean of the calibrated class probabilities over the case's
analysed, in-scope images (each image weighs the same), its top class as the label and
that mean probability as the confidence; "needs review" when the confidence is below the
model's confidence threshold (manifest), when the images' own top labels disagree, or
when any image is out of scope (the model was shown something unlike its training data).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from cases.models import Case, SmearImage
from inference.artifacts import (
    artifact_delete,
    artifact_location,
    artifact_store,
    predictor_for,
)
from inference.models import (
    CaseResult,
    DeploymentEvent,
    ModelEvaluation,
    ModelVersion,
    Prediction,
)
from training.data import DatasetError

logger = logging.getLogger(__name__)


class ModelImportError(Exception):
    """An artifact was refused; the message says why, in words an administrator can act on."""


class RegistryError(Exception):
    """A deploy, rollback, shadow or retire request that the registry's rules forbid."""


# --- registry -------------------------------------------------------------------------


def model_version_import(*, source: Path, actor=None) -> ModelVersion:
    """Register an artifact folder after proving it: hash, load, and one test image.

    Nothing is left behind when it is refused: no row, and no files in the models storage.
    """
    from runtime.artifact import ArtifactError
    from runtime.predictor import Predictor

    source = Path(source)
    try:
        predictor = Predictor.load(source)
    except ArtifactError as exc:
        raise ModelImportError(f"refused: {exc}") from exc
    manifest = predictor.manifest
    label = f"{manifest.name} {manifest.version}"
    if ModelVersion.objects.filter(name=manifest.name, version=manifest.version).exists():
        raise ModelImportError(f"refused: {label} is already registered")
    twin = ModelVersion.objects.filter(content_hash=manifest.content_hash).first()
    if twin is not None:
        raise ModelImportError(f"refused: these weights are already registered as {twin}")
    report = {}
    if (source / "report.json").is_file():
        try:
            report = json.loads((source / "report.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelImportError(f"refused: report.json is not valid JSON ({exc})") from exc

    location = artifact_location(
        name=manifest.name, version=manifest.version, content_hash=manifest.content_hash
    )
    artifact_store(source, location)
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                name=manifest.name,
                version=manifest.version,
                architecture=manifest.architecture,
                classes=list(manifest.classes),
                input_size=manifest.input_size,
                artifact=location,
                content_hash=manifest.content_hash,
                manifest=manifest.to_dict(),
                report=report,
                imported_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.IMPORT,
                target=version,
                detail={"content_hash": version.content_hash, "synthetic": version.is_synthetic},
            )
    except IntegrityError as exc:
        artifact_delete(location)
        raise ModelImportError(f"refused: {label} was registered at the same moment") from exc
    except BaseException:
        artifact_delete(location)
        raise
    return version


def _event(version: ModelVersion, action: str, actor, reason: str) -> DeploymentEvent:
    event = DeploymentEvent.objects.create(
        model_version=version,
        action=action,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        reason=reason,
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DEPLOY,
        target=version,
        detail={"event": action, "reason": reason},
    )
    return event


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RegistryError("a reason is required")
    return reason


def _deploy(version: ModelVersion, *, actor, reason: str, action: str) -> DeploymentEvent:
    reason = _reason(reason)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelVersion.Status.DEPLOYED:
            raise RegistryError(f"{version} is already deployed")
        if version.status == ModelVersion.Status.RETIRED:
            raise RegistryError(f"{version} is retired and cannot serve again")
        # The old one steps down first: the constraint allows one deployed row at a time.
        ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.DEPLOYED).update(
            status=ModelVersion.Status.REGISTERED
        )
        version.status = ModelVersion.Status.DEPLOYED
        version.save(update_fields=["status"])
        return _event(version, action, actor, reason)


def model_version_deploy(*, model_version: ModelVersion, actor, reason: str) -> DeploymentEvent:
    """Make this version serve every new analysis; workers switch on their next task."""
    return _deploy(model_version, actor=actor, reason=reason, action=DeploymentEvent.Action.DEPLOY)


def model_version_previous() -> ModelVersion | None:
    """The version that served before the deployed one (the target of a rollback)."""
    current = ModelVersion.objects.deployed()
    events = DeploymentEvent.objects.filter(
        action__in=[DeploymentEvent.Action.DEPLOY, DeploymentEvent.Action.ROLLBACK]
    ).select_related("model_version")
    for event in events.order_by("-created", "-pk"):
        if current is None or event.model_version_id != current.pk:
            return event.model_version
    return None


def model_version_rollback(*, actor, reason: str) -> DeploymentEvent:
    """Deploy again the version that served before the current one."""
    previous = model_version_previous()
    if previous is None:
        raise RegistryError("no earlier deployed version to roll back to")
    return _deploy(previous, actor=actor, reason=reason, action=DeploymentEvent.Action.ROLLBACK)


def model_version_set_shadow(*, model_version: ModelVersion, actor, reason: str) -> DeploymentEvent:
    """Let this version predict new cases beside the deployed one, for comparison only."""
    reason = _reason(reason)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if version.status != ModelVersion.Status.REGISTERED:
            raise RegistryError(f"{version} is {version.get_status_display().lower()}, not idle")
        ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.REGISTERED
        )
        version.status = ModelVersion.Status.SHADOW
        version.save(update_fields=["status"])
        return _event(version, DeploymentEvent.Action.SHADOW, actor, reason)


def model_version_retire(*, model_version: ModelVersion, actor, reason: str) -> DeploymentEvent:
    """Take a registered or shadow version out of use for good (its predictions stay)."""
    reason = _reason(reason)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if version.status == ModelVersion.Status.DEPLOYED:
            raise RegistryError(f"{version} is deployed: deploy another version first")
        if version.status == ModelVersion.Status.RETIRED:
            raise RegistryError(f"{version} is already retired")
        version.status = ModelVersion.Status.RETIRED
        version.save(update_fields=["status"])
        return _event(version, DeploymentEvent.Action.RETIRE, actor, reason)


class EvaluationRequestError(Exception):
    """A local evaluation asked for from the web names no set this site offers."""


def evaluation_sets() -> list[str]:
    """The labelled sets an administrator may evaluate from the web: the folders directly
    under EVALUATION_DATA_ROOT, each holding one sub-folder per class."""
    root = Path(settings.EVALUATION_DATA_ROOT)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def model_version_evaluation_request(
    *, model_version: ModelVersion, dataset: str, actor, note: str = ""
) -> ModelEvaluation:
    """Queue a local evaluation of one of ``evaluation_sets()`` for a worker."""
    from inference.dispatch import model_evaluation_send

    if dataset not in evaluation_sets():
        raise EvaluationRequestError(f"there is no labelled set {dataset!r} to evaluate on")
    with transaction.atomic():
        evaluation = ModelEvaluation.objects.create(
            model_version=model_version,
            dataset=str(Path(settings.EVALUATION_DATA_ROOT) / dataset),
            note=note,
            actor=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.EVALUATE,
            target=model_version,
            detail={"dataset": evaluation.dataset, "evaluation": evaluation.pk, "queued": True},
        )
        evaluation_id = evaluation.pk

        def send() -> None:
            if not model_evaluation_send(evaluation_id):
                ModelEvaluation.objects.filter(pk=evaluation_id).update(
                    status=ModelEvaluation.Status.FAILED,
                    failure_reason="The task queue was unreachable; ask again once it is back.",
                )

        transaction.on_commit(send)
    return evaluation


def model_evaluation_run(*, evaluation_id: int) -> ModelEvaluation:
    """Run a queued local evaluation (the worker's task); a set that cannot be scored
    fails with its reason. A re-delivered message finds the row done and does nothing."""
    from runtime.artifact import ArtifactError
    from training.local_evaluation import evaluate_folder

    evaluation = ModelEvaluation.objects.select_related("model_version").get(pk=evaluation_id)
    if evaluation.status != ModelEvaluation.Status.PENDING:
        return evaluation
    try:
        predictor = predictor_for(evaluation.model_version)
        result = evaluate_folder(predictor, evaluation.dataset)
    except (DatasetError, ArtifactError, OSError) as exc:
        evaluation.status = ModelEvaluation.Status.FAILED
        evaluation.failure_reason = str(exc)
        evaluation.save(update_fields=["status", "failure_reason"])
        return evaluation
    _evaluation_fill(evaluation, result)
    evaluation.save()
    return evaluation


def _evaluation_fill(evaluation: ModelEvaluation, result: dict) -> None:
    evaluation.status = ModelEvaluation.Status.DONE
    evaluation.dataset_fingerprint = result["fingerprint"]
    evaluation.images_count = result["n"]
    evaluation.accuracy = result["metrics"]["accuracy"]
    evaluation.macro_f1 = result["metrics"]["macro_f1_present"]
    evaluation.result = result


def model_version_evaluate(
    *,
    model_version: ModelVersion,
    data_dir: Path,
    actor=None,
    label_map: dict[str, str] | None = None,
    note: str = "",
) -> ModelEvaluation:
    """Score a version on a labelled local folder now, in this process (the command line).

    Raises DatasetError for a folder that holds nothing to score; nothing is stored then.
    """
    from training.local_evaluation import evaluate_folder

    result = evaluate_folder(predictor_for(model_version), data_dir, label_map=label_map)
    with transaction.atomic():
        evaluation = ModelEvaluation(
            model_version=model_version,
            dataset=str(data_dir),
            note=note,
            actor=actor if getattr(actor, "is_authenticated", False) else None,
        )
        _evaluation_fill(evaluation, result)
        evaluation.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.EVALUATE,
            target=model_version,
            detail={
                "dataset": str(data_dir),
                "evaluation": evaluation.pk,
                "fingerprint": result["fingerprint"],
                "images": result["n"],
                "accuracy": result["metrics"]["accuracy"],
            },
        )
    return evaluation


# --- analysis -------------------------------------------------------------------------

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


def _claim(case_id: int, version: ModelVersion) -> list[SmearImage]:
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


def _read(image: SmearImage) -> bytes:
    """The upload's bytes from storage; FileNotFoundError is final, other OSErrors retry."""
    with image.file.open("rb") as fh:
        return fh.read()


def _predict(predictor, blobs: dict[int, bytes]):
    """Prepare and classify; return ({image pk: answer}, {image pk: failure}, ms per image,
    {image pk: prepared array})."""
    from runtime.preprocess import ImageDecodeError

    arrays, failures = {}, {}
    for pk, prepared in zip(blobs, predictor.prepare_many(list(blobs.values())), strict=True):
        if isinstance(prepared, ImageDecodeError):
            failures[pk] = IMAGE_UNREADABLE.format(detail=prepared)
        else:
            arrays[pk] = prepared
    answers, ms = predictor.predict(list(arrays.values()))
    per_image = ms / len(answers) if answers else 0.0
    return dict(zip(arrays, answers, strict=True)), failures, per_image, arrays


def _heatmaps_attach(predictor, version, arrays: dict[int, np.ndarray], blobs) -> int:
    """Grad-CAM overlays at each upload's own size, added to the stored predictions.

    Runs after the predictions are committed, so no clinician waits for a reviewer's
    aid. A heatmap is not the answer: if Grad-CAM or the storage fails, the predictions
    stand without one and the failure is logged.
    """
    from runtime.heatmaps import overlay_png
    from runtime.preprocess import load_rgb

    if not arrays or not settings.INFERENCE_HEATMAPS:
        return 0
    storage = Prediction._meta.get_field("heatmap").storage
    attached = 0
    try:
        maps = predictor.heatmaps(list(arrays.values()))
        for pk, heat in zip(arrays, maps, strict=True):
            name = storage.save(
                f"heatmaps/{pk}-{uuid.uuid4().hex}.png",
                ContentFile(overlay_png(load_rgb(blobs[pk]), heat)),
            )
            # Only an empty heatmap is filled: the prediction itself is never changed.
            attached += Prediction.objects.filter(
                image_id=pk, model_version=version, heatmap=""
            ).update(heatmap=name)
    except Exception:
        logger.exception("Grad-CAM overlays for %s failed; predictions stand without", version)
    return attached


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
    """Recompute a version's aggregate for a case from its predictions (rule: module doc)."""
    predictions = list(
        Prediction.objects.filter(image__case=case, model_version=model_version).exclude(
            image__status=SmearImage.Status.FAILED
        )
    )
    classes = list(model_version.classes)
    # Out-of-scope images do not vote; when every image is out of scope the aggregate over
    # all of them is kept only so the row exists.
    in_scope = [p for p in predictions if not p.out_of_scope] or predictions
    mean = {c: sum(p.probabilities.get(c, 0.0) for p in in_scope) / len(in_scope) for c in classes}
    label = max(classes, key=lambda c: (mean[c], -classes.index(c)))
    threshold = float(model_version.manifest.get("confidence_threshold", 0.0))
    disagree = len({p.label for p in in_scope}) > 1
    result, _ = CaseResult.objects.update_or_create(
        case=case,
        model_version=model_version,
        defaults={
            "label": label,
            "confidence": mean[label],
            "probabilities": mean,
            "needs_review": mean[label] < threshold
            or disagree
            or any(p.out_of_scope for p in predictions),
            "images_count": len(predictions),
            "out_of_scope_count": sum(p.out_of_scope for p in predictions),
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


def _store(case_id, version, shadow, rows, failures) -> None:
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


def _fail_case_images(case_id: int, reason: str) -> int:
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
        failed = _fail_case_images(case_id, MODEL_UNAVAILABLE.format(model=version, detail=exc))
        return AnalysisOutcome(case_id, str(version), failed=failed, note="model unavailable")

    images = _claim(case_id, version)
    if not images:
        return AnalysisOutcome(case_id, str(version), note="nothing to analyse")
    blobs, failures = {}, {}
    for image in images:
        try:
            blobs[image.pk] = _read(image)
        except FileNotFoundError:
            failures[image.pk] = IMAGE_MISSING
    answers, unreadable, per_image_ms, arrays = _predict(predictor, blobs)
    failures.update(unreadable)
    rows = _prediction_rows(version, answers, per_image_ms, worker_host)

    shadow = ModelVersion.objects.shadow()
    shadow_rows = []
    if shadow is not None:
        shadow_rows = _shadow_rows(shadow, answers, blobs, worker_host)
    _store(case_id, version, shadow, rows + shadow_rows, failures)
    _heatmaps_attach(predictor, version, arrays, blobs)
    return AnalysisOutcome(
        case_id,
        str(version),
        predicted=len(rows),
        failed=len(failures),
        shadow_predicted=len(shadow_rows),
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
        shadow_answers, _, per_image_ms, _ = _predict(predictor, todo)
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


def stale_images_requeue(*, older_than_s: int) -> list[int]:
    """Queue again the cases whose images sat PENDING or ANALYSING too long.

    Covers a lost broker message, a publish that failed while the broker was down and a
    worker that died mid-task. Re-queuing is safe because the task is idempotent; the
    images' clock restarts so that one stuck image is not queued every sweep.
    """
    from inference.dispatch import case_analysis_request

    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = SmearImage.objects.filter(
        status__in=[SmearImage.Status.PENDING, SmearImage.Status.ANALYSING],
        status_changed__lt=cutoff,
    ).exclude(case__status=Case.Status.DRAFT)  # a draft waits for its clinician to submit
    case_ids = sorted(set(stale.values_list("case_id", flat=True)))
    queued = [case_id for case_id in case_ids if case_analysis_request(case_id)]
    SmearImage.objects.filter(pk__in=stale.filter(case_id__in=queued).values("pk")).update(
        status_changed=timezone.now()
    )
    if queued:
        logger.info("sweep: queued %d stale case(s) again: %s", len(queued), queued)
    return queued
