"""An outage of the database answers 503 saying nothing was saved, on pages and in the API;
a bug stays a 500. (The real outages are in tests/faults.)"""

from http import HTTPStatus

import pytest
from django.db import OperationalError

from cases import services
from tests.helpers import smear_bytes, upload


@pytest.fixture
def database_down(monkeypatch):
    def refuse(**kwargs):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed')

    monkeypatch.setattr(services, "case_images_add", refuse)


def test_the_api_says_the_database_is_unreachable_and_nothing_was_saved(
    database_down, client_for, alice, alice_patient
):
    case = services.case_create(user=alice, patient=alice_patient)
    response = client_for(alice).post(
        f"/api/cases/{case.pk}/images/", {"file": upload("a.jpg", smear_bytes(0))}
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["message"].startswith("The database is unreachable. Nothing from this request")


def test_a_page_says_the_database_is_unreachable_and_the_cause_is_logged(
    database_down, client_for, alice, alice_patient, caplog
):
    case = services.case_create(user=alice, patient=alice_patient)
    client = client_for(alice)
    client.raise_request_exception = False
    response = client.post(f"/cases/{case.pk}/images/", {"images": [upload("a.jpg", b"x")]})
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert "The database is unreachable" in response.content.decode()
    assert any(
        "port 5432 failed" in str(record.exc_info[1])
        for record in caplog.records
        if record.exc_info and record.levelname == "ERROR"
    )


def test_a_bug_is_still_a_plain_500(monkeypatch, client_for, alice, alice_patient):
    def broken(**kwargs):
        raise KeyError("a bug, not an outage")

    monkeypatch.setattr(services, "case_images_add", broken)
    case = services.case_create(user=alice, patient=alice_patient)
    client = client_for(alice)
    client.raise_request_exception = False
    page = client.post(f"/cases/{case.pk}/images/", {"images": [upload("a.jpg", b"x")]})
    assert page.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    api = client.post(f"/api/cases/{case.pk}/images/", {"file": upload("a.jpg", smear_bytes(0))})
    assert api.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert api.json()["error"]["code"] == "server_error"
