"""A verdict says whether the model's answer had been shown to that reviewer before it:
opening `/reviews/cases/N/?blinded=0`, the case page or the API and then filing a verdict
"blinded" no longer yields a verdict stored as blinded."""

from http import HTTPStatus

import pytest

from reviews.models import AnswerShown, Review
from tests.factories import ModelVersionFactory, analysed_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(db):
    # 0.873 prints as "87.3%": only the model's answer puts it on a page.
    return analysed_case(
        "Team A", "PAT-9", ModelVersionFactory.create(), label="CML", confidence=0.873
    )


@pytest.fixture
def blinded_bob(bob):
    bob.blinded_review = True
    bob.save(update_fields=["blinded_review"])
    return bob


def test_peeking_with_blinded_0_then_filing_blinded_is_recorded_as_seen(
    client_for, blinded_bob, case
):
    client = client_for(blinded_bob)
    assert "87.3%" in client.get(f"/reviews/cases/{case.pk}/?blinded=0").content.decode()
    response = client.post(
        f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "CML", "blinded": "1"}
    )
    assert response.status_code == HTTPStatus.FOUND
    review = Review.objects.get(case=case)
    assert review.answer_shown_before is True and review.blinded is False
    shown = AnswerShown.objects.get(case=case, reviewer=blinded_bob)
    assert shown.where == f"/reviews/cases/{case.pk}/?blinded=0"


def test_a_peek_cannot_excuse_an_uncommented_override(client_for, blinded_bob, case):
    """Blinded overrides need no comment (nothing to argue against); a reviewer who saw
    the answer must say why they override it."""
    client = client_for(blinded_bob)
    client.get(f"/reviews/cases/{case.pk}/?blinded=0")
    response = client.post(
        f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "AML", "blinded": "1"}
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert not Review.objects.filter(case=case).exists()


def test_a_verdict_filed_without_ever_seeing_the_answer_is_blinded(client_for, blinded_bob, case):
    client = client_for(blinded_bob)
    page = client.get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "87.3%" not in page
    response = client.post(
        f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "AML", "blinded": "1"}
    )
    assert response.status_code == HTTPStatus.FOUND
    review = Review.objects.get(case=case)
    assert review.blinded is True and review.answer_shown_before is False
    # After the verdict the page reveals the answer: a second verdict is not blind.
    assert "87.3%" in client.get(f"/reviews/cases/{case.pk}/").content.decode()
    client.post(f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "CML", "blinded": "1"})
    latest = Review.objects.filter(case=case).first()
    assert latest is not None and (latest.blinded, latest.answer_shown_before) == (False, True)


@pytest.mark.parametrize(
    "where", ["api-case", "api-cases", "api-predictions", "case-page", "case-status", "report"]
)
def test_an_answer_seen_anywhere_else_makes_the_verdict_not_blind(
    client_for, api_for, bob, case, where
):
    """Bob (not blinded by setting) reads the answer elsewhere, then asks for a blinded
    verdict for this one request."""
    if where.startswith("api"):
        path = {"api-case": f"/api/cases/{case.pk}/", "api-cases": "/api/cases/"}.get(
            where, f"/api/predictions/?case={case.pk}"
        )
        assert "CML" in api_for(bob).get(path).content.decode()
        client = client_for(bob)
    else:
        client = client_for(bob)
        path = {
            "case-page": f"/cases/{case.pk}/",
            "case-status": f"/cases/{case.pk}/status/",
        }.get(where, f"/reviews/cases/{case.pk}/report/")
        assert "87.3%" in client.get(path).content.decode()
    client.post(
        f"/reviews/cases/{case.pk}/verdict/?blinded=1", {"diagnosis": "CML", "blinded": "1"}
    )
    review = Review.objects.get(case=case)
    assert (review.blinded, review.answer_shown_before) == (False, True)


def test_a_clinician_reading_answers_leaves_no_answer_shown_rows(alice, api_for, case):
    """Only those who may review have verdicts to taint."""
    api_for(alice).get("/api/cases/")
    assert not AnswerShown.objects.exists()
