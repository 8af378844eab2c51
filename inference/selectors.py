"""Reads of the model registry and of the models' answers for cases.

Access is the caller's: these functions take records the user already may see (or are
for administrators' pages, which check the role first). Where a caller must hide some
answers from the user (a blinded reviewer), it passes the condition on CaseResult or
Prediction rows that keeps only the visible ones; this app does not know why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from django.conf import settings
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.utils import timezone

from cases.models import Case, SmearImage
from inference.models import (
    ABSTAINED,
    CaseAnalysis,
    CaseResult,
    DeploymentEvent,
    ModelVersion,
    Prediction,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# --- the registry -------------------------------------------------------------------


def model_version_list() -> QuerySet[ModelVersion]:
    """Every registered version, newest first: names for filters and the registry."""
    return ModelVersion.objects.select_related("imported_by").order_by("-created", "-pk")


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


def deployment_event_list() -> QuerySet[DeploymentEvent]:
    return DeploymentEvent.objects.select_related("model_version", "actor").order_by(
        "-created", "-pk"
    )


def evaluation_sets() -> list[str]:
    """The labelled sets an administrator may evaluate from the web: the folders directly
    under EVALUATION_DATA_ROOT, each holding one sub-folder per class."""
    root = Path(settings.EVALUATION_DATA_ROOT)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def images_ahead_in_queue(*, case: Case) -> int:
    """How many images of other submitted cases wait longer than this case's first one:
    a count across teams, which says nothing about anyone's case but its place."""
    waiting = [SmearImage.Status.PENDING, SmearImage.Status.ANALYSING]
    first = (
        case.images.filter(status__in=waiting).order_by("status_changed").values("status_changed")
    )[:1]
    if not first:
        return 0
    return (
        SmearImage.objects.filter(
            status__in=waiting,
            status_changed__lt=first[0]["status_changed"],
            case__status__in=[Case.Status.SUBMITTED, Case.Status.ANALYSING],
        )
        .exclude(case=case)
        .count()
    )


def case_waiting_since(*, case_ids: list[int]) -> dict[int, datetime]:
    """When each case's longest-waiting image was handed to the workers, for the cases
    with images waiting; one query."""
    rows = (
        SmearImage.objects.filter(
            case__in=case_ids,
            status__in=[SmearImage.Status.PENDING, SmearImage.Status.ANALYSING],
            queued__isnull=False,
        )
        .order_by()
        .values("case")
        .annotate(since=Min("queued"))
    )
    return {row["case"]: row["since"] for row in rows}


def analysis_overdue(since: datetime | None) -> bool:
    """Whether an analysis waiting since then has waited longer than it should."""
    overdue_after = timedelta(seconds=settings.ANALYSIS_OVERDUE_AFTER)
    return since is not None and timezone.now() - since > overdue_after


def waiting_images() -> dict[str, Any]:
    """The workers' backlog for operators: images waiting and the oldest one's wait (s)."""
    waiting = SmearImage.objects.filter(
        status__in=[SmearImage.Status.PENDING, SmearImage.Status.ANALYSING],
        case__status__in=[Case.Status.SUBMITTED, Case.Status.ANALYSING],
    )
    summary = waiting.aggregate(count=Count("pk"), oldest=Min("queued"))
    oldest = summary["oldest"]
    return {
        "images": summary["count"],
        "oldest_wait_s": round((timezone.now() - oldest).total_seconds(), 1) if oldest else 0.0,
    }


def case_analysis_version(*, case_id: int) -> ModelVersion | None:
    """The version the case is analysed with (its newest CaseAnalysis), or None yet."""
    analysis = (
        CaseAnalysis.objects.filter(case_id=case_id)
        .select_related("model_version")
        .order_by("-created", "-pk")
        .first()
    )
    return analysis.model_version if analysis else None


def case_reanalysis_choices(*, case: Case) -> list[ModelVersion]:
    """The versions a case may be analysed again with: any not retired, but its own."""
    target = case_analysis_version(case_id=case.pk)
    versions = ModelVersion.objects.exclude(status=ModelVersion.Status.RETIRED)
    if target is not None:
        versions = versions.exclude(pk=target.pk)
    return list(versions.order_by("-created", "-pk"))


def predicted_label_choices() -> list[str]:
    """Subtypes a case can be filtered by: the classes of every registered version. Every
    answer's label is one of its version's classes, so this holds every label seen so far
    without reading the answers (a DISTINCT over 100,000 of them costs more than a page)."""
    labels = {
        label
        for classes in ModelVersion.objects.order_by().values_list("classes", flat=True)
        for label in classes
    }
    return sorted(labels)


# --- answers for cases ----------------------------------------------------------------


class CaseAnswer(TypedDict):
    """What cases_with_results adds to each case (None where it has no visible answer)."""

    predicted_label: str | None
    predicted_confidence: float | None
    needs_review: bool | None
    result_model_version_id: int | None
    all_out_of_scope: bool | None


def cases_with_results(
    cases: QuerySet[Case], *, visible: Q | Exists | None = None
) -> QuerySet[WithAnnotations[Case, CaseAnswer]]:
    """Annotate cases with their latest primary (deployed-model) answer, all in one query.

    ``visible`` narrows the CaseResult rows the user may see (OuterRef("case") is the
    case); a case with none shows no answer. Shadow models' answers are for
    administrators comparing models, never part of a case's answer.
    """
    primary = CaseResult.objects.filter(case=OuterRef("pk"), primary=True).order_by("-created")
    if visible is not None:
        primary = primary.filter(visible)
    # An answer with every image out of scope gave no subtype: its top class is not one.
    answered = primary.exclude(ABSTAINED)
    return cases.annotate(
        predicted_label=Subquery(answered.values("label")[:1]),
        predicted_confidence=Subquery(answered.values("confidence")[:1]),
        needs_review=Subquery(primary.values("needs_review")[:1]),
        result_model_version_id=Subquery(primary.values("model_version")[:1]),
        # Every image outside what the model knows: the list shows no subtype then.
        all_out_of_scope=Subquery(
            primary.annotate(
                all_oos=ExpressionWrapper(ABSTAINED, output_field=BooleanField())
            ).values("all_oos")[:1]
        ),
    )


AnyCase = TypeVar("AnyCase", bound=Case)


def cases_with_answer(cases: QuerySet[AnyCase]) -> QuerySet[AnyCase]:
    """Only the cases that have a primary answer, whether or not the user may see it."""
    return cases.filter(Exists(CaseResult.objects.filter(case=OuterRef("pk"), primary=True)))


def cases_by_need_of_review(cases: QuerySet[AnyCase]) -> QuerySet[AnyCase]:
    """Only the cases that have a primary answer: those that need review first, then the
    least confident, then the oldest. Ordered on the answer's own columns through a join
    (one primary answer per case: a constraint), which the caseresult_queue_order index
    serves; ordering on a subquery per case would compute it for every case, then sort."""
    return cases.filter(results__primary=True).order_by(
        "-results__needs_review", "results__confidence", "created", "pk"
    )


def cases_predicted_as(cases: QuerySet[AnyCase], label: str) -> QuerySet[AnyCase]:
    """Only the cases whose primary answer (any of them) is this label; an answer with
    every image out of scope gave no label."""
    answered = CaseResult.objects.filter(case=OuterRef("pk"), primary=True, label=label)
    return cases.filter(Exists(answered.exclude(ABSTAINED)))


def case_result(*, case: Case) -> CaseResult | None:
    """The case-level answer shown to clinicians: its primary one (there is one at most)."""
    return (
        CaseResult.objects.filter(case=case, primary=True)
        .select_related("model_version")
        .order_by("-created")
        .first()
    )


def case_results(*, case: Case, include_shadow: bool) -> list[CaseResult]:
    """A case's answers, primary first, newest first; the others only when asked for.

    Each carries ``kind``: "answer" (the case's), "reanalysis" (of the version the case is
    being analysed with again, until it has every image), "earlier" (of a version the case
    was analysed with before) or "shadow" (a model compared beside the deployed one).
    """
    results = CaseResult.objects.filter(case=case)
    if not include_shadow:
        results = results.filter(primary=True)
    found = list(results.select_related("model_version").order_by("-primary", "-created"))
    analysed = list(
        CaseAnalysis.objects.filter(case=case)
        .order_by("-created", "-pk")
        .values_list("model_version", flat=True)
    )
    for result in found:
        # For the templates, which read attributes; a model instance takes any (mypy: none).
        result.kind = (  # type: ignore[attr-defined]
            "answer"
            if result.primary
            else "reanalysis"
            if analysed and result.model_version_id == analysed[0]
            else "earlier"
            if result.model_version_id in analysed
            else "shadow"
        )
    return found


def case_results_for(
    *, case_ids: list[int], visible: Q | Exists | None = None
) -> dict[int, CaseResult]:
    """The latest primary result of each of these cases, in one query."""
    results = CaseResult.objects.filter(case__in=case_ids, primary=True)
    if visible is not None:
        results = results.filter(visible)
    return {r.case_id: r for r in results.select_related("model_version").order_by("created")}


def _primary_versions(case: Case) -> list[int]:
    """Model versions whose per-image answers a clinician may see for this case: the one
    whose result is the case's answer (it is stored with the first predictions)."""
    return list(
        CaseResult.objects.filter(case=case, primary=True).values_list("model_version", flat=True)
    )


def case_images(*, case: Case) -> Sequence[SmearImage]:
    """A case's images, each with `prediction`: the primary model's, or None."""
    versions = _primary_versions(case)
    images = list(
        case.images.select_related("uploaded_by").prefetch_related(
            Prefetch(
                "predictions",
                queryset=Prediction.objects.filter(model_version_id__in=versions)
                .select_related("model_version")
                .order_by("-created"),
                to_attr="primary_predictions",
            )
        )
    )
    for image in images:
        # For the templates, which read attributes; a model instance takes any (mypy: none).
        image.prediction = (  # type: ignore[attr-defined]
            image.primary_predictions[0] if image.primary_predictions else None
        )
    return images


def primary_predictions(
    images: QuerySet[SmearImage], *, visible: Q | Exists | None = None
) -> QuerySet[Prediction]:
    """Per-image predictions of the version that made each case's answer, and no other
    (not a shadow's, not an earlier or unfinished analysis's, whatever is deployed now)."""
    primary = CaseResult.objects.filter(
        case=OuterRef("image__case"), model_version=OuterRef("model_version"), primary=True
    )
    predictions = Prediction.objects.filter(image__in=images.values("pk")).filter(Exists(primary))
    if visible is not None:
        predictions = predictions.filter(visible)
    return predictions.select_related("model_version", "image").order_by("image_id", "-created")


def predictions_of(images: QuerySet[SmearImage]) -> QuerySet[Prediction]:
    """Every prediction (deployed and shadow models) of these images."""
    return Prediction.objects.filter(image__in=images.values("pk"))
