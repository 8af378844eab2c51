"""Reading patient data leaves a trace: every list (API and pages) is one audit event per
request carrying the ids it returned, and thumbnails, heatmaps and image files are audited
one by one. Without this, reading every case's notes through `GET /api/cases/` left no
record of who had looked."""

from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from cases.models import SmearImage
from inference.models import Prediction
from tests.factories import (
    ModelVersionFactory,
    SmearImageFactory,
    analysed_case,
    heatmap_attach,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(alice, bob, charlie):
    """Two analysed cases of Team A (alice's, bob reviews them) and one of Team B."""
    version = ModelVersionFactory.create()
    return {
        "a": [analysed_case("Team A", f"A-{n}", version, images=2) for n in (1, 2)],
        "b": [analysed_case("Team B", "B-1", version)],
    }


def _team_a_ids(cases, what: str) -> list[int]:
    a = cases["a"]
    if what == "cases.case":
        return sorted(c.pk for c in a)
    if what == "cases.patient":
        return sorted(c.patient_id for c in a)
    if what == "cases.smearimage":
        return sorted(SmearImage.objects.filter(case__in=a).values_list("pk", flat=True))
    return sorted(Prediction.objects.filter(image__case__in=a).values_list("pk", flat=True))


def _one_read_event(do, user) -> AuditEvent:
    """Run the request; it must have written exactly one audit event, with one INSERT."""
    before = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as queries:
        response = do()
    assert response.status_code == HTTPStatus.OK, response.content[:500]
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "audit_auditevent"')]
    assert len(inserts) == 1
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.order_by("-pk").first()
    assert event is not None and event.actor == user and event.action == "view"
    return event


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("/api/cases/", "cases.case"),
        ("/api/patients/", "cases.patient"),
        ("/api/images/", "cases.smearimage"),
        ("/api/predictions/", "inference.prediction"),
    ],
)
def test_harvesting_a_list_through_the_api_is_one_event_with_the_ids_returned(
    cases, alice, api_for, url, what
):
    api = api_for(alice)
    event = _one_read_event(lambda: api.get(url), alice)
    assert event.target_type == what
    # Team B's records were not returned, so they are not named.
    assert sorted(event.detail["ids"]) == _team_a_ids(cases, what)
    assert event.detail["where"] == url


def test_a_filtered_list_names_only_what_it_returned_and_the_query(cases, alice, api_for):
    api = api_for(alice)
    first = cases["a"][0]
    event = _one_read_event(lambda: api.get(f"/api/cases/?patient={first.patient_id}"), alice)
    assert event.detail["ids"] == [first.pk]
    assert event.detail["where"] == f"/api/cases/?patient={first.patient_id}"


@pytest.mark.parametrize(
    ("who", "url", "what"),
    [
        ("alice", "/cases/", "cases.case"),
        ("alice", "/patients/", "cases.patient"),
        ("bob", "/reviews/", "cases.case"),
        ("bob", "/reviews/predictions/", "inference.prediction"),
    ],
)
def test_a_list_page_is_one_event_with_the_ids_shown(cases, client_for, request, who, url, what):
    user = request.getfixturevalue(who)
    client = client_for(user)
    event = _one_read_event(lambda: client.get(url), user)
    assert event.target_type == what
    assert sorted(event.detail["ids"]) == _team_a_ids(cases, what)


def test_a_cases_images_listed_through_the_api_are_named(cases, alice, api_for):
    case = cases["a"][0]
    api = api_for(alice)
    event = _one_read_event(lambda: api.get(f"/api/cases/{case.pk}/images/"), alice)
    assert sorted(event.detail["ids"]) == sorted(case.images.values_list("pk", flat=True))


@pytest.mark.parametrize("via", ["page", "api"])
def test_each_thumbnail_fetched_is_audited_on_its_case(cases, alice, client_for, api_for, via):
    image = SmearImageFactory.create(case=cases["a"][0], data=b"\x89PNG stored")
    if via == "page":
        client = client_for(alice)
        event = _one_read_event(lambda: client.get(f"/images/{image.pk}/thumbnail/"), alice)
    else:
        api = api_for(alice)
        event = _one_read_event(lambda: api.get(f"/api/images/{image.pk}/thumbnail/"), alice)
    assert (event.target_type, event.target_id) == ("cases.smearimage", str(image.pk))
    assert event.case_id == image.case_id and event.detail == {"thumbnail": True}


def test_each_heatmap_fetched_is_audited_on_its_case(cases, bob, client_for):
    prediction = heatmap_attach(Prediction.objects.filter(image__case=cases["a"][0])[0])
    client = client_for(bob)
    event = _one_read_event(
        lambda: client.get(f"/reviews/predictions/{prediction.pk}/heatmap.png"), bob
    )
    assert (event.target_type, event.target_id) == ("inference.prediction", str(prediction.pk))
    assert event.case_id == prediction.image.case_id and event.detail == {"heatmap": True}


def test_one_prediction_or_image_read_through_the_api_is_audited(cases, alice, api_for):
    api = api_for(alice)
    prediction = Prediction.objects.filter(image__case=cases["a"][0])[0]
    event = _one_read_event(lambda: api.get(f"/api/predictions/{prediction.pk}/"), alice)
    assert event.target_id == str(prediction.pk) and event.case_id == cases["a"][0].pk
    image = prediction.image
    event = _one_read_event(lambda: api.get(f"/api/images/{image.pk}/"), alice)
    assert event.target_id == str(image.pk) and event.case_id == image.case_id
