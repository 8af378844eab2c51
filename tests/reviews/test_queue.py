from datetime import date, timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cases.models import Case
from inference.models import ModelVersion
from reviews.selectors import QueueFilters, review_queue
from tests.factories import ModelVersionFactory, analysed_case


@pytest.fixture
def deployed(db):
    return ModelVersionFactory.create()


def _queue_ids(client, **params) -> list[int]:
    response = client.get("/reviews/", params)
    assert response.status_code == HTTPStatus.OK
    return [case.pk for case in response.context["page"]]


def test_the_queue_puts_needs_review_first_then_low_confidence_then_oldest(
    client_for, bob, deployed
):
    sure_old = analysed_case("Team A", "P1", deployed, confidence=0.95, age_days=9)
    sure_new = analysed_case("Team A", "P2", deployed, confidence=0.95, age_days=1)
    unsure = analysed_case("Team A", "P3", deployed, confidence=0.55)
    flagged_sure = analysed_case("Team A", "P4", deployed, confidence=0.8, needs_review=True)
    flagged_unsure = analysed_case("Team A", "P5", deployed, confidence=0.4, needs_review=True)
    analysed_case("Team A", "P6", deployed, status=Case.Status.REVIEWED)
    analysed_case("Team A", "P7", deployed, status=Case.Status.ANALYSING)
    analysed_case("Team B", "P8", deployed, needs_review=True)

    assert _queue_ids(client_for(bob)) == [
        flagged_unsure.pk,
        flagged_sure.pk,
        unsure.pk,
        sure_old.pk,
        sure_new.pk,
    ]


def test_the_queue_filters_by_team_subtype_model_version_and_date(admin_user, deployed):
    other = ModelVersionFactory.create(
        name="cnn", version="2", status=ModelVersion.Status.REGISTERED
    )
    a_aml = analysed_case("Team A", "P1", deployed, label="AML", age_days=10)
    a_cll = analysed_case("Team A", "P2", deployed, label="CLL")
    b_aml = analysed_case("Team B", "P3", other, label="AML")

    def ids(**filters):
        return {c.pk for c in review_queue(user=admin_user, filters=QueueFilters(**filters))}

    assert ids() == {a_aml.pk, a_cll.pk, b_aml.pk}
    assert ids(team_id=a_aml.team_id) == {a_aml.pk, a_cll.pk}
    assert ids(subtype="AML") == {a_aml.pk, b_aml.pk}
    assert ids(model_version_id=other.pk) == {b_aml.pk}
    assert ids(created_to=date.today() - timedelta(days=5)) == {a_aml.pk}
    assert ids(created_from=date.today() - timedelta(days=1)) == {a_cll.pk, b_aml.pk}


def test_the_queue_page_costs_the_same_queries_for_one_case_or_twenty(client_for, bob, deployed):
    client = client_for(bob)
    analysed_case("Team A", "P0", deployed)
    client.get("/reviews/")
    with CaptureQueriesContext(connection) as one:
        client.get("/reviews/")
    for n in range(1, 20):
        analysed_case("Team A", f"P{n}", deployed, images=2)
    with CaptureQueriesContext(connection) as twenty:
        response = client.get("/reviews/")
    assert len(response.context["page"]) == 20
    assert len(twenty) == len(one)


def test_the_subtype_filter_on_the_page_keeps_the_queue_order(client_for, bob, deployed):
    sure = analysed_case("Team A", "P1", deployed, label="AML", confidence=0.9)
    unsure = analysed_case("Team A", "P2", deployed, label="AML", confidence=0.6)
    analysed_case("Team A", "P3", deployed, label="CLL", confidence=0.5)
    assert _queue_ids(client_for(bob), subtype="AML") == [unsure.pk, sure.pk]


def test_a_blinded_reviewer_gets_the_same_cases_oldest_first_without_their_answers(
    client_for, bob, deployed
):
    old = analysed_case("Team A", "P1", deployed, label="CML", confidence=0.95, age_days=3)
    new = analysed_case("Team A", "P2", deployed, label="AML", confidence=0.4, needs_review=True)
    analysed_case("Team A", "P3", deployed, status=Case.Status.REVIEWED)
    bob.blinded_review = True
    bob.save(update_fields=["blinded_review"])
    client = client_for(bob)
    assert _queue_ids(client) == [old.pk, new.pk]
    page = client.get("/reviews/").content.decode()
    assert "CML" not in page and "needs review</span>" not in page
