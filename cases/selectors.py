"""Reads of patients, cases and images, always through the user asking.

Every query a request makes for these records starts here, so what a user may see is
decided by one rule (``accounts.policies.team_scope``): an administrator sees
everything, clinicians and reviewers the records of their teams. Anything else does not
exist for them (404). Seeing a record is not editing it: only the team's clinicians and
administrators edit (``accounts.policies.can_edit``).
"""

from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import Count, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404

from accounts import policies
from accounts.models import User
from cases.models import Case, Patient, SmearImage

M = TypeVar("M", bound=Model)
# A primary key as a page's URL converter (int) or the REST API's router (str) hands it over.
PrimaryKey = int | str


def patient_list(*, user: User, search: str = "") -> QuerySet[Patient]:
    patients = Patient.objects.filter(policies.team_scope(user, "team")).select_related("team")
    if search:
        patients = patients.filter(identifier__icontains=search.strip())
    return patients


def patient_get(*, user: User, pk: PrimaryKey) -> Patient:
    return get_or_404(patient_list(user=user), pk)


def patient_get_editable(*, user: User, pk: PrimaryKey) -> Patient:
    patient = patient_get(user=user, pk=pk)
    if not policies.can_edit(user, patient.team_id):
        raise PermissionDenied("Only the team's clinicians change its patients.")
    return patient


@dataclass(frozen=True)
class CaseFilters:
    status: str = ""
    created_from: date | None = None
    created_to: date | None = None
    mine: bool = False
    search: str = ""
    patient_id: int | None = None


def case_list(*, user: User, filters: CaseFilters | None = None) -> QuerySet[Case]:
    """Visible cases with their patient and image count, newest first, in one query."""
    filters = filters or CaseFilters()
    cases = (
        Case.objects.filter(cases_visible(user))
        .select_related("patient", "team", "submitted_by")
        .annotate(
            # A case without images counts 0, not NULL (the API promises an integer).
            images_count=Coalesce(
                Subquery(
                    SmearImage.objects.filter(case=OuterRef("pk"))
                    .order_by()
                    .values("case")
                    .annotate(n=Count("pk"))
                    .values("n")
                ),
                0,
            ),
        )
        .order_by("-created", "-pk")
    )
    if filters.status:
        cases = cases.filter(status=filters.status)
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


def cases_visible(user: User, path: str = "") -> Q:
    """The condition on the case at ``path`` ("" for cases themselves) that case_list
    applies: a case of the user's teams, not withdrawn. For records about cases that are
    counted or ordered by their own columns (answers, for agreement), as a join."""
    prefix = f"{path}__" if path else ""
    return Q(policies.team_scope(user, f"{prefix}team"), **{f"{prefix}withdrawn__isnull": True})


def case_get(*, user: User, pk: PrimaryKey) -> Case:
    return get_or_404(case_list(user=user), pk)


def case_get_editable(*, user: User, pk: PrimaryKey) -> Case:
    case = case_get(user=user, pk=pk)
    if not policies.can_edit(user, case.team_id):
        raise PermissionDenied("Only the team's clinicians change its cases.")
    return case


def case_get_withdrawn(*, user: User, pk: PrimaryKey) -> Case:
    """A withdrawn case the user may see, to say so at its old address; else 404."""
    withdrawn = Case.objects.filter(
        policies.team_scope(user, "team"), withdrawn__isnull=False
    ).select_related("patient", "team", "withdrawn_by")
    return get_or_404(withdrawn, pk)


def image_get_withdrawable(*, user: User, pk: PrimaryKey) -> SmearImage:
    image = image_get(user=user, pk=pk)
    if not policies.can_edit(user, image.case.team_id):
        raise PermissionDenied("Only the team's clinicians withdraw its images.")
    return image


def image_list(*, user: User) -> QuerySet[SmearImage]:
    """Current images (not withdrawn) of the cases the user sees."""
    return SmearImage.objects.filter(images_visible(user)).select_related("case", "uploaded_by")


def images_visible(user: User, path: str = "") -> Q:
    """The condition on the image at ``path`` (a record's relation to it; "" for images
    themselves) that image_list applies: a current image of a case the user sees. As a
    join, for lists of records about images (predictions) that are ordered by their own
    columns: the database then walks their index and checks each row's image and case."""
    prefix = f"{path}__" if path else ""
    visible = cases_visible(user, f"{prefix}case")
    # Images themselves go through their manager, which leaves withdrawn ones out already.
    return visible & Q(**{f"{prefix}withdrawn__isnull": True}) if path else visible


def image_get(*, user: User, pk: PrimaryKey) -> SmearImage:
    return get_or_404(image_list(user=user), pk)


def get_or_404(queryset: QuerySet[M], pk: PrimaryKey) -> M:
    """The row with this primary key among those the query allows, or 404 (also for a
    primary key that is not a number: another team's row and no row look the same)."""
    try:
        return queryset.get(pk=int(pk))
    except (ObjectDoesNotExist, ValueError, TypeError) as exc:
        raise Http404(f"No such {queryset.model._meta.verbose_name}.") from exc
