import csv
import io
from http import HTTPStatus

import pytest

from audit.models import AuditEvent
from reviews.services import review_create
from tests.factories import ModelVersionFactory, analysed_case


@pytest.fixture
def cases(db, bob):
    version = ModelVersionFactory.create()
    first = analysed_case("Team A", "PAT-AAA", version, label="AML", images=2)
    second = analysed_case("Team A", "PAT-BBB", version, label="CLL", confidence=0.7)
    analysed_case("Team B", "PAT-CCC", version, label="AML")
    review_create(case=second, reviewer=bob, diagnosis="CML", comment="blasts absent")
    return first, second


def _rows(client, **params) -> list[str]:
    page = client.get("/reviews/predictions/", params).context["page"]
    return [p.image.case.patient.identifier for p in page]


def test_bob_searches_predictions_by_patient_label_model_and_verdict(client_for, bob, cases):
    client = client_for(bob)
    assert sorted(_rows(client)) == ["PAT-AAA", "PAT-AAA", "PAT-BBB"]
    assert _rows(client, q="bbb") == ["PAT-BBB"]
    assert _rows(client, q="AML") == ["PAT-AAA", "PAT-AAA"]
    assert len(_rows(client, q="cnn")) == 3
    assert _rows(client, q="override") == ["PAT-BBB"]
    assert _rows(client, q="CML") == ["PAT-BBB"]


def test_the_csv_export_streams_every_row_and_is_audited(client_for, bob, cases):
    response = client_for(bob).get("/reviews/predictions/export.csv", {"q": "PAT"})
    assert response.status_code == HTTPStatus.OK
    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert sorted(r["patient"] for r in rows) == ["PAT-AAA", "PAT-AAA", "PAT-BBB"]
    reviewed = next(r for r in rows if r["patient"] == "PAT-BBB")
    assert (reviewed["label"], reviewed["verdict"], reviewed["diagnosis"]) == (
        "CLL",
        "override",
        "CML",
    )
    event = AuditEvent.objects.get(action=AuditEvent.Action.EXPORT)
    assert event.actor == bob and event.detail["rows"] == 3 and event.detail["search"] == "PAT"


def test_a_formula_in_a_patient_identifier_is_defused_in_the_csv(client_for, bob, db):
    analysed_case("Team A", "=HYPERLINK(1)", ModelVersionFactory.create())
    body = b"".join(client_for(bob).get("/reviews/predictions/export.csv").streaming_content)
    assert b"'=HYPERLINK(1)" in body


def test_an_out_of_scope_prediction_shows_no_subtype_as_on_the_case_page(client_for, bob):
    case = analysed_case("Team A", "PAT-OOS", ModelVersionFactory.create(), label="CML")
    case.images.get().predictions.update(out_of_scope=True)
    page = client_for(bob).get("/reviews/predictions/").content.decode()
    assert "data-out-of-scope" in page and ">CML<" not in page
