"""A case whose every image the guard flagged: the model gave no subtype, so nothing a
reviewer records agrees with it, no page offers to agree with it, and agreement counts
leave it out."""

from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError

from reviews.models import Review
from reviews.selectors import agreement_for_model_version
from reviews.services import case_sign_off, review_create
from tests.factories import ModelVersionFactory, analysed_case


def test_a_diagnosis_on_an_out_of_scope_case_is_never_agreement_and_needs_no_argument(bob, db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version, label="AML", images=2, out_of_scope=True)
    # The model's top label was AML, but it gave no answer: AML is the reviewer's own call.
    review = review_create(case=case, reviewer=bob, diagnosis="AML")
    assert (review.verdict, review.model_label) == (Review.Verdict.OVERRIDE, "AML")


def test_an_answered_case_still_asks_why_the_model_is_overridden(bob, db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version, label="AML")
    assert review_create(case=case, reviewer=bob, diagnosis="AML").verdict == "agree"
    with pytest.raises(ValidationError, match="why"):
        review_create(case=case, reviewer=bob, diagnosis="CML")


def test_the_review_page_offers_no_agree_button_when_the_model_gave_no_answer(client_for, bob, db):
    version = ModelVersionFactory.create()
    abstained = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    answered = analysed_case("Team A", "P2", version, label="AML")
    client = client_for(bob)
    page = client.get(f"/reviews/cases/{abstained.pk}/").content.decode()
    assert "Agree: AML" not in page
    assert "data-abstained" in page and "not an answer" in page
    assert "Record diagnosis" in page and "Record override" not in page  # nothing to override
    other = client.get(f"/reviews/cases/{answered.pk}/").content.decode()
    assert "Agree: AML" in other and "Record override" in other


def test_the_clinicians_case_page_says_the_bars_are_not_an_answer(client_for, bob, db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    response = client_for(bob).get(f"/cases/{case.pk}/")
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "data-abstained" in page and "the bars below are not an answer" in page
    assert "Case prediction: AML" not in page


def test_agreement_leaves_out_cases_where_the_model_gave_no_answer(bob, db):
    version = ModelVersionFactory.create()
    for identifier, out_of_scope in (("P1", False), ("P2", True)):
        case = analysed_case("Team A", identifier, version, label="AML", out_of_scope=out_of_scope)
        review_create(case=case, reviewer=bob, diagnosis="AML")
        case_sign_off(case=case, reviewer=bob)
    stats = agreement_for_model_version(user=bob, model_version=version)
    assert (stats.reviewed, stats.agreed) == (1, 1)
