"""Reads for reviewers: the queue, one case's verdicts and sign-off, the audit of
predictions and agreement per model version.

Which records a user sees is the cases app's rule; who may review, and when a blinded
reviewer may see a model's answer, are ``accounts.policies``. The model's answers come
from ``inference.selectors``, narrowed here by ``answers_visible`` for a blinded reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.core.cache import cache
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.shortcuts import get_object_or_404

from accounts import policies
from accounts.models import Team, User
from cases import selectors as case_selectors
from cases.models import Case
from inference import selectors as answers
from inference.models import ABSTAINED, CaseResult, ModelVersion, Prediction
from reviews.models import Review, SignOff
from reviews.stats import Agreement, agreement_compute


def diagnosed_by(user: User, case_ref: str) -> Exists:
    """Whether the user has recorded a verdict on the case at ``OuterRef(case_ref)``."""
    return Exists(Review.objects.filter(case=OuterRef(case_ref), reviewer=user))


def answers_visible(user: User, case_ref: str) -> Exists | None:
    """The condition keeping only the model answers this user may see (None: all).

    A blinded reviewer sees answers only on the cases they have already diagnosed.
    """
    return diagnosed_by(user, case_ref) if policies.answers_blinded(user) else None


def reviewer_has_diagnosed(*, user: User, case: Case) -> bool:
    return case.reviews.filter(reviewer=user).exists()


def model_answer_hidden(*, user: User, case: Case) -> bool:
    """Whether this case's model answer is hidden from the user on every page right now."""
    if not policies.answers_blinded(user):
        return False
    return policies.answer_hidden(user, has_diagnosed=reviewer_has_diagnosed(user=user, case=case))


def cases_with_sign_off(cases: QuerySet[Case], *, visible: Exists | None) -> QuerySet[Case]:
    """Annotate cases with their signed-off diagnosis (None: not signed off, or hidden from
    a blinded reviewer who has not diagnosed the case yet)."""
    sign_off = SignOff.objects.filter(case=OuterRef("pk"))
    if visible is not None:
        sign_off = sign_off.filter(visible)
    return cases.annotate(signed_off_diagnosis=Subquery(sign_off.values("review__diagnosis")[:1]))


def sign_offs_for(*, user: User, case_ids: list[int]) -> dict[int, SignOff]:
    """The sign-off (final diagnosis) of each of these (already visible) cases that has one.

    A blinded reviewer sees another reviewer's diagnosis only after recording their own.
    """
    sign_offs = SignOff.objects.filter(case__in=case_ids)
    visible = answers_visible(user, "case")
    if visible is not None:
        sign_offs = sign_offs.filter(visible)
    return {s.case_id: s for s in sign_offs.select_related("reviewer", "review")}


# --- the queue ------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    team_id: int | None = None
    subtype: str = ""
    model_version_id: int | None = None
    created_from: date | None = None
    created_to: date | None = None


def review_queue(*, user: User, filters: QueueFilters | None = None) -> QuerySet[Case]:
    """Analysed cases awaiting sign-off: "needs review" first, then least confident, oldest.

    A blinded reviewer gets the same cases, oldest first: an order taken from the model's
    answers would hint at them. One query per page whatever its size.
    """
    policies.require_reviewer(user)
    filters = filters or QueueFilters()
    visible = answers_visible(user, "case")
    cases = case_selectors.case_list(user=user).filter(status=Case.Status.ANALYSED)
    if visible is None:
        cases = answers.cases_by_need_of_review(cases)
    else:
        cases = answers.cases_with_answer(cases).order_by("created", "pk")
    cases = answers.cases_with_results(cases, visible=visible)
    if filters.team_id:
        cases = cases.filter(team_id=filters.team_id)
    if filters.subtype:
        cases = cases.filter(predicted_label=filters.subtype)
    if filters.model_version_id:
        cases = cases.filter(result_model_version_id=filters.model_version_id)
    if filters.created_from:
        cases = cases.filter(created__date__gte=filters.created_from)
    if filters.created_to:
        cases = cases.filter(created__date__lte=filters.created_to)
    return cases


def queue_team_choices(*, user: User) -> QuerySet[Team]:
    return Team.objects.all() if user.is_admin else user.teams.all()


# --- one case -------------------------------------------------------------------------


def review_case_get(*, user: User, pk: int) -> Case:
    policies.require_reviewer(user)
    return case_selectors.case_get(user=user, pk=pk)


def review_list_for_case(*, case: Case) -> QuerySet[Review]:
    return case.reviews.select_related("reviewer", "model_version").order_by("-created", "-pk")


def sign_off_for_case(*, case: Case) -> SignOff | None:
    return SignOff.objects.select_related("reviewer", "review").filter(case=case).first()


def case_results(*, user: User, case: Case) -> list[CaseResult]:
    """The case-level answers the user may see, primary first, newest first.

    Shadow models' answers are for administrators comparing models.
    """
    return answers.case_results(case=case, include_shadow=user.is_admin)


def prediction_get_with_heatmap(*, user: User, pk: int) -> Prediction:
    """A prediction of a case the reviewer sees, with a stored heatmap, or 404.

    Scope first, role second: another team's heatmap is a 404 for everyone (as its case
    is), and only a clinician of the case's own team learns that it is for reviewers.
    """
    predictions = answers.predictions_of(case_selectors.image_list(user=user)).exclude(heatmap="")
    prediction = get_object_or_404(predictions, pk=pk)
    policies.require_reviewer(user)
    return prediction


# --- the audit of predictions ---------------------------------------------------------


def prediction_audit_list(*, user: User, search: str = "") -> QuerySet[Prediction]:
    """Every prediction (deployed and shadow models) on the cases the user sees.

    Each row carries its case's latest verdict. ``search`` matches the patient
    identifier, the label, the model's name or version, the verdict or the diagnosis.
    """
    policies.require_reviewer(user)
    latest = Review.objects.filter(case=OuterRef("image__case")).order_by("-created", "-pk")
    visible = Prediction.objects.filter(case_selectors.images_visible(user, "image"))
    if policies.answers_blinded(user):
        # Blinded: only cases this reviewer has already diagnosed show their answers.
        visible = visible.filter(diagnosed_by(user, "image__case"))
    predictions = (
        visible.select_related("image__case__patient", "image__case__team", "model_version")
        .annotate(
            review_verdict=Subquery(latest.values("verdict")[:1]),
            review_diagnosis=Subquery(latest.values("diagnosis")[:1]),
            # A join (one sign-off per case at most) that each row of a page probes by
            # index; an EXISTS here becomes a hash of every sign-off, built per request.
            signed_off=ExpressionWrapper(
                Q(image__case__sign_off__isnull=False), output_field=BooleanField()
            ),
        )
        .order_by("-created", "-pk")
    )
    search = search.strip()
    if search:
        predictions = predictions.filter(
            Q(image__case__patient__identifier__icontains=search)
            | Q(label__icontains=search)
            | Q(model_version__name__icontains=search)
            | Q(model_version__version__icontains=search)
            | Q(review_verdict__icontains=search)
            | Q(review_diagnosis__icontains=search)
        )
    return predictions


# --- agreement ------------------------------------------------------------------------


def agreement_for_model_version(*, user: User, model_version: ModelVersion) -> Agreement:
    """Model versus signed-off diagnosis, over the signed-off cases the user sees, counted
    by the database: one row per (label, diagnosis) whatever the number of cases.

    The counts are kept in the cache under the newest sign-off: only a sign-off brings a
    case into them, and a signed-off case's answers no longer change (it accepts no
    re-analysis and cannot be withdrawn), so a new sign-off is counted at once and
    nothing else is missed. Counting 40,000 signed-off cases costs more than a page;
    reading the newest sign-off costs an index probe. AGREEMENT_CACHE_SECONDS bounds
    the life of an entry all the same.
    """
    policies.require_reviewer(user)
    teams = (
        "all"
        if user.is_admin
        else ",".join(map(str, sorted(user.teams.values_list("pk", flat=True))))
    )
    newest = SignOff.objects.aggregate(newest=Max("pk"))["newest"] or 0
    key = f"agreement:{model_version.pk}:{teams}:{newest}"
    counts = cache.get(key)
    if counts is None:
        counts = list(
            CaseResult.objects.filter(
                case_selectors.cases_visible(user, "case"),
                model_version=model_version,
                case__sign_off__isnull=False,
            )
            # A case where the model gave no answer is neither agreement nor disagreement.
            .exclude(ABSTAINED)
            .order_by()
            .values_list("label", "case__sign_off__review__diagnosis")
            .annotate(n=Count("pk"))
        )
        cache.set(key, counts, settings.AGREEMENT_CACHE_SECONDS)
    # In the reviewers' vocabulary: a label stands for the diagnosis it maps to (two
    # labels may map to one diagnosis: agreement_compute adds their counts up).
    mapped = [(model_version.clinical_label(label) or label, dx, n) for label, dx, n in counts]
    return agreement_compute(mapped, settings.CLINICAL_DIAGNOSES)
