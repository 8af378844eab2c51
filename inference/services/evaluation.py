"""Writes for local evaluations: a version scored on a site's own labelled images, from
the command line (at once, in this process) or the registry page (queued for a worker)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record, known_actor
from inference.artifacts import predictor_for
from inference.models import ModelEvaluation, ModelVersion
from inference.selectors import evaluation_sets
from inference.services.claims import evaluation_claim, lease_kept
from training.data import DatasetError


class EvaluationRequestError(Exception):
    """A local evaluation asked for from the web names no set this site offers."""


def model_version_evaluation_request(
    *, model_version: ModelVersion, dataset: str, actor: User | None, note: str = ""
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
            actor=known_actor(actor),
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


def model_evaluation_run(*, evaluation_id: int, holder: str) -> ModelEvaluation:
    """Run a queued local evaluation (the worker's task); a set that cannot be scored
    fails with its reason. A re-delivered message finds the row done, or claimed by a
    worker still running it, and does nothing."""
    if not evaluation_claim(evaluation_id=evaluation_id, holder=holder):
        return ModelEvaluation.objects.get(pk=evaluation_id)
    with lease_kept(ModelEvaluation, [evaluation_id], holder):
        return _evaluation_run(evaluation_id)


def _evaluation_run(evaluation_id: int) -> ModelEvaluation:
    from runtime.artifact import ArtifactError
    from training.local_evaluation import evaluate_folder

    evaluation = ModelEvaluation.objects.select_related("model_version").get(pk=evaluation_id)
    evaluation.claimed_by, evaluation.lease_expires = "", None
    try:
        predictor = predictor_for(evaluation.model_version)
        result = evaluate_folder(predictor, evaluation.dataset)
    except (DatasetError, ArtifactError, OSError) as exc:
        evaluation.status = ModelEvaluation.Status.FAILED
        evaluation.failure_reason = str(exc)
        evaluation.save(update_fields=["status", "failure_reason", "claimed_by", "lease_expires"])
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
    actor: User | None = None,
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
            actor=known_actor(actor),
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
