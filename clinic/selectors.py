"""Reads for the case pages and the API: the user's cases with the answers they may see.

Which records exist for the user is the cases app's rule; which model answers and
sign-offs a blinded reviewer may see yet is the reviews app's (``answers_visible``).
"""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from cases import selectors as case_selectors
from cases.models import Case
from inference import selectors as answers
from inference.models import CaseResult, Prediction
from reviews import selectors as review_selectors
from reviews.models import SignOff


def case_list(
    *, user: User, filters: case_selectors.CaseFilters | None = None, predicted: str = ""
) -> QuerySet[Case]:
    """Visible cases with their patient, image count and primary answer, newest first.

    Everything a list row shows comes from this one query, whatever the page size.
    """
    visible = review_selectors.answers_visible(user, "case")
    cases = review_selectors.cases_with_sign_off(
        answers.cases_with_results(
            case_selectors.case_list(user=user, filters=filters), visible=visible
        ),
        visible=visible,
    )
    if predicted:
        cases = answers.cases_predicted_as(cases, predicted)
    return cases


def case_get(*, user: User, pk: case_selectors.PrimaryKey) -> Case:
    return case_selectors.get_or_404(case_list(user=user), pk)


def case_results_for(*, user: User, cases: list[Case]) -> dict[int, CaseResult]:
    """The latest primary result of each of these (already visible) cases, in one query."""
    return answers.case_results_for(
        case_ids=[c.pk for c in cases], visible=review_selectors.answers_visible(user, "case")
    )


def case_sign_offs_for(*, user: User, cases: list[Case]) -> dict[int, SignOff]:
    return review_selectors.sign_offs_for(user=user, case_ids=[c.pk for c in cases])


def prediction_list(*, user: User) -> QuerySet[Prediction]:
    """Per-image predictions of primary models only, for the cases the user sees."""
    return answers.primary_predictions(
        case_selectors.image_list(user=user),
        visible=review_selectors.answers_visible(user, "image__case"),
    )
