"""Reads for patients, cases and images, always through the user asking.

Every query a request makes starts here, so that what a user may see is decided
in one place: an administrator sees everything, clinicians and reviewers the
records of their teams. Anything else does not exist for them (404). Seeing a
record is not editing it: only the team's clinicians and administrators edit.
"""

from dataclasses import dataclass
from datetime import date

from django.core.exceptions import PermissionDenied
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.http import Http404

from accounts.models import Team, User
from cases.models import Case, Patient, SmearImage
from inference.models import CaseResult, ModelVersion, Prediction


def _team_scope(user: User, team_field: str) -> Q:
    if user.is_admin:
        return Q()
    return Q(**{f"{team_field}__in": user.teams.values("pk")})


def user_can_edit(user: User, team_id: int) -> bool:
    """Whether the user may change a record of this team (not just see it)."""
    if user.is_admin:
        return True
    return user.is_clinician and user.teams.filter(pk=team_id).exists()


def team_list_for_create(*, user: User) -> QuerySet[Team]:
    """Teams in which the user may open patients and cases."""
    if user.is_admin:
        return Team.objects.all()
    if user.is_clinician:
        return user.teams.all()
    return Team.objects.none()


def patient_list(*, user: User, search: str = "") -> QuerySet[Patient]:
    patients = Patient.objects.filter(_team_scope(user, "team")).select_related("team")
    if search:
        patients = patients.filter(identifier__icontains=search.strip())
    return patients


def patient_get(*, user: User, pk: int) -> Patient:
    return _get_or_404(patient_list(user=user), pk)


def patient_get_editable(*, user: User, pk: int) -> Patient:
    patient = patient_get(user=user, pk=pk)
    if not user_can_edit(user, patient.team_id):
        raise PermissionDenied("Only the team's clinicians change its patients.")
    return patient


def _diagnosed_by(user: User, case_ref: str) -> Exists:
    from reviews.models import Review  # reviews builds on cases, not the other way round

    return Exists(Review.objects.filter(case=OuterRef(case_ref), reviewer=user))


def _answers_blinded(user: User) -> bool:
    from reviews.selectors import answers_blinded  # reviews builds on cases

    return answers_blinded(user=user)


def _primary_result(user: User) -> QuerySet[CaseResult]:
    # Shadow models' results are for comparison by administrators, never for clinicians.
    results = CaseResult.objects.filter(case=OuterRef("pk"), primary=True).order_by("-created")
    if _answers_blinded(user):
        results = results.filter(_diagnosed_by(user, "case"))
    return results


@dataclass(frozen=True)
class CaseFilters:
    status: str = ""
    predicted: str = ""
    created_from: date | None = None
    created_to: date | None = None
    mine: bool = False
    search: str = ""
    patient_id: int | None = None


def case_list(*, user: User, filters: CaseFilters | None = None) -> QuerySet[Case]:
    """Visible cases with their patient, predicted subtype and image count, newest first.

    Everything a list row shows comes from this one query, whatever the page size.
    """
    filters = filters or CaseFilters()
    primary_result = _primary_result(user)
    cases = (
        Case.objects.filter(_team_scope(user, "team"))
        .select_related("patient", "team", "submitted_by")
        .annotate(
            predicted_label=Subquery(primary_result.values("label")[:1]),
            predicted_confidence=Subquery(primary_result.values("confidence")[:1]),
            needs_review=Subquery(primary_result.values("needs_review")[:1]),
            # Every image outside what the model knows: the list shows no subtype then.
            all_out_of_scope=Subquery(
                primary_result.annotate(
                    all_oos=ExpressionWrapper(
                        Q(images_count__gt=0, out_of_scope_count__gte=F("images_count")),
                        output_field=BooleanField(),
                    )
                ).values("all_oos")[:1]
            ),
            images_count=Subquery(
                SmearImage.objects.filter(case=OuterRef("pk"))
                .order_by()
                .values("case")
                .annotate(n=Count("pk"))
                .values("n")
            ),
        )
        .order_by("-created", "-pk")
    )
    if filters.status:
        cases = cases.filter(status=filters.status)
    if filters.predicted:
        cases = cases.filter(
            Exists(
                CaseResult.objects.filter(
                    case=OuterRef("pk"), primary=True, label=filters.predicted
                )
            )
        )
    if filters.created_from:
        cases = cases.filter(created__date__gte=filters.created_from)
    if filters.created_to:
        cases = cases.filter(created__date__lte=filters.created_to)
    if filters.mine:
        cases = cases.filter(submitted_by=user)
    if filters.search:
        cases = cases.filter(patient__identifier__icontains=filters.search.strip())
    if filters.patient_id:
        cases = cases.filter(patient_id=filters.patient_id)
    return cases


def predicted_label_choices() -> list[str]:
    """Subtypes a case can be filtered by: the deployed model's classes and any seen so far."""
    labels = set(
        CaseResult.objects.filter(primary=True)
        .order_by()
        .values_list("label", flat=True)
        .distinct()
    )
    deployed = ModelVersion.objects.deployed()
    if deployed:
        labels.update(deployed.classes)
    return sorted(labels)


def case_get(*, user: User, pk: int) -> Case:
    return _get_or_404(case_list(user=user), pk)


def case_get_editable(*, user: User, pk: int) -> Case:
    case = case_get(user=user, pk=pk)
    if not user_can_edit(user, case.team_id):
        raise PermissionDenied("Only the team's clinicians change its cases.")
    return case


def case_images(*, case: Case) -> list[SmearImage]:
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
        image.prediction = image.primary_predictions[0] if image.primary_predictions else None
    return images


def case_result(*, case: Case) -> CaseResult | None:
    """The case-level answer shown to clinicians: the latest primary one."""
    return (
        CaseResult.objects.filter(case=case, primary=True)
        .select_related("model_version")
        .order_by("-created")
        .first()
    )


def case_results_for(*, user: User, cases) -> dict[int, CaseResult]:
    """The latest primary result of each of these (already visible) cases, in one query."""
    results = CaseResult.objects.filter(case__in=[c.pk for c in cases], primary=True)
    if _answers_blinded(user):
        results = results.filter(_diagnosed_by(user, "case"))
    return {r.case_id: r for r in results.select_related("model_version").order_by("created")}


def case_sign_offs_for(*, user: User, cases) -> dict:
    """The sign-off (final diagnosis) of each of these (already visible) cases that has one.

    A blinded reviewer sees another reviewer's diagnosis only after recording their own.
    """
    from reviews.models import SignOff  # reviews builds on cases

    sign_offs = SignOff.objects.filter(case__in=[c.pk for c in cases])
    if _answers_blinded(user):
        sign_offs = sign_offs.filter(_diagnosed_by(user, "case"))
    return {s.case_id: s for s in sign_offs.select_related("reviewer", "review")}


def _primary_versions(case: Case) -> list[int]:
    """Model versions whose per-image answers a clinician may see for this case."""
    versions = list(
        CaseResult.objects.filter(case=case, primary=True).values_list("model_version", flat=True)
    )
    deployed = ModelVersion.objects.deployed()
    if deployed:
        # Images analysed before the case-level result exists.
        versions.append(deployed.pk)
    return versions


def image_list(*, user: User) -> QuerySet[SmearImage]:
    return SmearImage.objects.filter(_team_scope(user, "case__team")).select_related(
        "case", "uploaded_by"
    )


def image_get(*, user: User, pk: int) -> SmearImage:
    return _get_or_404(image_list(user=user), pk)


def prediction_list(*, user: User) -> QuerySet[Prediction]:
    """Per-image predictions of primary models only, for the cases the user sees."""
    primary = CaseResult.objects.filter(
        case=OuterRef("image__case"), model_version=OuterRef("model_version"), primary=True
    )
    deployed = ModelVersion.objects.filter(
        pk=OuterRef("model_version"), status=ModelVersion.Status.DEPLOYED
    )
    predictions = Prediction.objects.filter(_team_scope(user, "image__case__team")).filter(
        Exists(primary) | Exists(deployed)
    )
    if _answers_blinded(user):
        predictions = predictions.filter(_diagnosed_by(user, "image__case"))
    return predictions.select_related("model_version", "image").order_by("image_id", "-created")


def _get_or_404(queryset: QuerySet, pk) -> object:
    try:
        return queryset.get(pk=int(pk))
    except (queryset.model.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404(f"No such {queryset.model._meta.verbose_name}.") from exc
