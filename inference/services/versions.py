"""Which model version analyses a case: pinned at submission, changed only by an
explicit, audited re-analysis request (see inference.services.results for which answer
a case shows)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record
from cases.models import Case, SmearImage
from inference.models import CaseAnalysis, ModelVersion
from inference.selectors import case_analysis_version
from inference.services.locks import deployment_lock
from inference.services.results import case_answer_refresh, case_status_refresh


def case_analysis_pin(*, case_id: int) -> ModelVersion | None:
    """The case's version, pinned now to the deployed one when it has none yet.

    Called when a case is submitted (inside that transaction) and by a worker for a case
    submitted while no model was deployed. None while no model is deployed.
    """
    with transaction.atomic():
        Case.objects.select_for_update().filter(pk=case_id).first()
        pinned = case_analysis_version(case_id=case_id)
        if pinned is not None:
            return pinned
        deployment_lock(exclusive=False)
        deployed = ModelVersion.objects.deployed()
        if deployed is not None:
            CaseAnalysis.objects.create(case_id=case_id, model_version=deployed)
        return deployed


def case_reanalysis_request(
    *, case: Case, model_version: ModelVersion, actor: User, reason: str
) -> CaseAnalysis:
    """Analyse a case again with another version, on an administrator's explicit request.

    The case's images are queued for that version; its answer replaces the one shown once
    it has every image (at once when it has them all already). Earlier predictions and
    answers are kept. Not for a draft, withdrawn or signed-off case, nor a retired version.
    The caller checks that the actor may (accounts.policies.require_admin).
    """
    from inference.dispatch import case_analysis_request

    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the case is analysed again."})
    if model_version.status == ModelVersion.Status.RETIRED:
        raise ValidationError(f"{model_version} is retired and analyses nothing more.")
    with transaction.atomic():
        locked = Case.objects.select_for_update().get(pk=case.pk)
        if locked.status == Case.Status.REVIEWED:
            raise ValidationError("The case is signed off: its answer can no longer change.")
        if locked.status == Case.Status.DRAFT or locked.withdrawn is not None:
            raise ValidationError("Only a submitted case can be analysed again.")
        previous = case_analysis_version(case_id=locked.pk)
        if previous is not None and previous.pk == model_version.pk:
            raise ValidationError(f"The case is already analysed with {model_version}.")
        analysis = CaseAnalysis.objects.create(
            case=locked, model_version=model_version, requested_by=actor, reason=reason
        )
        now = timezone.now()
        waiting = locked.images.exclude(predictions__model_version=model_version).update(
            status=SmearImage.Status.PENDING,
            failure_reason="",
            status_changed=now,
            queued=now,
            claimed_by="",
            lease_expires=None,
        )
        locked.images.filter(predictions__model_version=model_version).update(
            status=SmearImage.Status.DONE, failure_reason="", claimed_by="", lease_expires=None
        )
        if waiting:
            locked.status, locked.failure_reason = Case.Status.SUBMITTED, ""
            locked.save(update_fields=["status", "failure_reason", "updated"])
            transaction.on_commit(lambda: case_analysis_request(locked.pk))
        else:
            case_answer_refresh(case=locked, model_version=model_version)
            case_status_refresh(locked)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.SUBMIT,
            target=locked,
            case=locked,
            detail={
                "reanalysis": str(model_version),
                "previous": str(previous) if previous else None,
                "reason": reason,
                "images_queued": waiting,
            },
        )
    case.status = locked.status
    return analysis
