"""Writes for reviewing: verdicts and sign-off. Each is audited."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts import policies
from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record
from cases.models import Case
from inference.models import CaseResult
from reviews.models import INCONCLUSIVE, AnswerShown, Review, SignOff


def diagnosis_choices() -> list[str]:
    """What a reviewer may conclude: the clinical vocabulary, or inconclusive, whichever
    model answered (a deploy must not change what a diagnosis can be)."""
    return [*settings.CLINICAL_DIAGNOSES, INCONCLUSIVE]


def _locked_case(case: Case, reviewer: User) -> Case:
    """The case row, locked for the rest of the transaction, refusing a signed-off one."""
    policies.require_reviewer(reviewer)
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status == Case.Status.REVIEWED or SignOff.objects.filter(case=case).exists():
        raise ValidationError("The case is signed off: it accepts no further verdicts.")
    if case.status != Case.Status.ANALYSED:
        raise ValidationError(
            f"The case is {case.get_status_display().lower()}; only analysed cases are reviewed."
        )
    return case


def answer_shown_record(*, user: User, case_ids: Iterable[int], where: str) -> int:
    """Note that the model's answers (a case result or per-image predictions) for these
    cases were just shown to ``user`` (at ``where``), when they may review: their later
    verdicts on them are not blind. Returns how many rows were added (one INSERT)."""
    if not policies.can_review(user):
        return 0
    rows = [AnswerShown(case_id=pk, reviewer=user, where=where[:255]) for pk in set(case_ids)]
    AnswerShown.objects.bulk_create(rows)
    return len(rows)


def review_create(
    *,
    case: Case,
    reviewer: User,
    diagnosis: str,
    comment: str = "",
    blinded: bool = False,
) -> Review:
    """Record a verdict on the case's current (primary) model answer.

    The verdict follows from the diagnosis: the model's label is agreement, anything
    else an override. An override needs a comment unless the reviewer never saw the
    model's answer (blinded), since then there was nothing yet to argue against, or the
    model gave no answer (every image out of scope): then no diagnosis agrees with it.
    """
    comment = comment.strip()
    with transaction.atomic():
        case = _locked_case(case, reviewer)
        result = (
            CaseResult.objects.filter(case=case, primary=True)
            .select_related("model_version")
            .order_by("-created")
            .first()
        )
        if result is None:
            raise ValidationError("The case has no model answer to review.")
        if diagnosis not in diagnosis_choices():
            raise ValidationError({"diagnosis": f"{diagnosis!r} is not a diagnosis offered here."})
        # The model's label counts as the diagnosis it stands for (its manifest's mapping);
        # a label that stands for none can only be overridden.
        agrees = not result.abstained and diagnosis == result.model_version.clinical_label(
            result.label
        )
        verdict = Review.Verdict.AGREE if agrees else Review.Verdict.OVERRIDE
        # Asked-for blinding counts only if the answer was really never shown to them.
        shown_before = AnswerShown.objects.filter(case=case, reviewer=reviewer).exists()
        blinded = blinded and not shown_before
        nothing_to_argue_with = blinded or result.abstained
        if verdict == Review.Verdict.OVERRIDE and not nothing_to_argue_with and not comment:
            raise ValidationError({"comment": "Say why you override the model's answer."})
        review = Review.objects.create(
            case=case,
            reviewer=reviewer,
            model_version=result.model_version,
            model_label=result.label,
            model_confidence=result.confidence,
            model_abstained=result.abstained,
            verdict=verdict,
            diagnosis=diagnosis,
            comment=comment,
            blinded=blinded,
            answer_shown_before=shown_before,
        )
        audit_record(
            actor=reviewer,
            action=AuditEvent.Action.REVIEW,
            target=review,
            case=case,
            detail={
                "verdict": verdict,
                "diagnosis": diagnosis,
                "model_label": result.label,
                "model_abstained": result.abstained,
                "model_version": str(result.model_version),
                "blinded": blinded,
                "answer_shown_before": shown_before,
            },
        )
    return review


def case_sign_off(*, case: Case, reviewer: User) -> SignOff:
    """Sign the latest verdict: the case becomes reviewed and is locked for good."""
    with transaction.atomic():
        case = _locked_case(case, reviewer)
        review = case.reviews.order_by("-created", "-pk").first()
        if review is None:
            raise ValidationError("Record a verdict before signing off.")
        sign_off = SignOff.objects.create(case=case, review=review, reviewer=reviewer)
        case.status = Case.Status.REVIEWED
        case.save(update_fields=["status", "updated"])
        audit_record(
            actor=reviewer,
            action=AuditEvent.Action.REVIEW,
            target=sign_off,
            case=case,
            detail={"event": "sign_off", "diagnosis": review.diagnosis, "review": review.pk},
        )
    return sign_off
