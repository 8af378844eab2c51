"""Reads for reviewers and administrators, built on the cases app's user-scoped selectors.

Which cases a user sees is decided in ``cases.selectors`` (their teams; everything for an
administrator). This module adds the role rule on top: only reviewers and administrators
reach reviewing, and only administrators the model registry. A clinician is refused
(403); a case outside the reviewer's teams does not exist for them (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from accounts.models import Team, User
from cases import selectors as case_selectors
from cases.models import Case
from inference.models import CaseResult, DeploymentEvent, ModelVersion, Prediction
from reviews.models import Review, ReviewerSettings, SignOff
from reviews.stats import Agreement, agreement_compute


def require_reviewer(user: User) -> None:
    if not (user.is_reviewer or user.is_admin):
        raise PermissionDenied("Only reviewers and administrators review cases.")


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("Only administrators manage models.")


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

    One query per page whatever its size: the model's answer comes from subqueries.
    """
    require_reviewer(user)
    filters = filters or QueueFilters()
    primary = CaseResult.objects.filter(case=OuterRef("pk"), primary=True).order_by("-created")
    cases = (
        case_selectors.case_list(user=user)
        .filter(status=Case.Status.ANALYSED, predicted_label__isnull=False)
        .annotate(result_model_version_id=Subquery(primary.values("model_version")[:1]))
        .order_by("-needs_review", "predicted_confidence", "created", "pk")
    )
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


def subtype_choices() -> list[str]:
    return case_selectors.predicted_label_choices()


def model_version_list() -> QuerySet[ModelVersion]:
    """Every registered version, newest first: names for filters and the registry."""
    return ModelVersion.objects.select_related("imported_by").order_by("-created", "-pk")


# --- one case -------------------------------------------------------------------------


def review_case_get(*, user: User, pk: int) -> Case:
    require_reviewer(user)
    return case_selectors.case_get(user=user, pk=pk)


def review_list_for_case(*, case: Case) -> QuerySet[Review]:
    return case.reviews.select_related("reviewer", "model_version").order_by("-created", "-pk")


def sign_off_for_case(*, case: Case) -> SignOff | None:
    return SignOff.objects.select_related("reviewer", "review").filter(case=case).first()


def case_results(*, user: User, case: Case) -> list[CaseResult]:
    """The case-level answers the user may see, primary first, newest first.

    Shadow models' answers are for administrators comparing models, as in the cases app.
    """
    results = CaseResult.objects.filter(case=case)
    if not user.is_admin:
        results = results.filter(primary=True)
    return list(results.select_related("model_version").order_by("-primary", "-created"))


def reviewer_blinded(*, user: User) -> bool:
    """The reviewer's standing choice; a request may override it (see the views)."""
    return ReviewerSettings.objects.filter(user=user, blinded=True).exists()


def reviewer_has_diagnosed(*, user: User, case: Case) -> bool:
    return case.reviews.filter(reviewer=user).exists()


def answers_blinded(*, user: User) -> bool:
    """Whether the user is a blinded reviewer: one who sees a model's answer only on the
    cases they have already diagnosed, on every page and endpoint."""
    return user.is_reviewer and reviewer_blinded(user=user)


def model_answer_hidden(*, user: User, case: Case) -> bool:
    return answers_blinded(user=user) and not reviewer_has_diagnosed(user=user, case=case)


def prediction_get_with_heatmap(*, user: User, pk: int) -> Prediction:
    """A prediction of a case the reviewer sees, with a stored heatmap, or 404."""
    require_reviewer(user)
    predictions = Prediction.objects.filter(
        image__in=case_selectors.image_list(user=user).values("pk")
    ).exclude(heatmap="")
    return get_object_or_404(predictions, pk=pk)


# --- the audit of predictions ---------------------------------------------------------


def prediction_audit_list(*, user: User, search: str = "") -> QuerySet[Prediction]:
    """Every prediction (deployed and shadow models) on the cases the user sees.

    Each row carries its case's latest verdict. ``search`` matches the patient
    identifier, the label, the model's name or version, the verdict or the diagnosis.
    """
    require_reviewer(user)
    latest = Review.objects.filter(case=OuterRef("image__case")).order_by("-created", "-pk")
    visible = Prediction.objects.filter(image__in=case_selectors.image_list(user=user).values("pk"))
    if answers_blinded(user=user):
        # Blinded: only cases this reviewer has already diagnosed show their answers.
        visible = visible.filter(image__case__reviews__reviewer=user).distinct()
    predictions = (
        visible.select_related("image__case__patient", "image__case__team", "model_version")
        .annotate(
            review_verdict=Subquery(latest.values("verdict")[:1]),
            review_diagnosis=Subquery(latest.values("diagnosis")[:1]),
            signed_off=Exists(SignOff.objects.filter(case=OuterRef("image__case"))),
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
    """Model versus signed-off diagnosis, over the signed-off cases the user sees."""
    require_reviewer(user)
    pairs = (
        CaseResult.objects.filter(
            model_version=model_version,
            case__in=case_selectors.case_list(user=user).values("pk"),
            case__sign_off__isnull=False,
        )
        .order_by()
        .values_list("label", "case__sign_off__review__diagnosis")
    )
    return agreement_compute(pairs, model_version.classes)


# --- the registry ---------------------------------------------------------------------


def registry_list(*, user: User) -> QuerySet[ModelVersion]:
    require_admin(user)
    return model_version_list()


def registry_get(*, user: User, pk: int) -> ModelVersion:
    require_admin(user)
    return get_object_or_404(model_version_list(), pk=pk)


def deployment_event_list(*, user: User) -> QuerySet[DeploymentEvent]:
    require_admin(user)
    return DeploymentEvent.objects.select_related("model_version", "actor").order_by(
        "-created", "-pk"
    )
