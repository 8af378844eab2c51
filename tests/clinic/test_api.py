"""The REST API: schema, a client that knows only the schema, errors, access."""

import re
from http import HTTPStatus

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from cases.models import Case
from inference.models import Prediction
from inference.services.heatmaps import HEATMAPS_OFF, predictions_heatmap_refuse
from tests.factories import CaseResultFactory, ModelVersionFactory, PredictionFactory
from tests.helpers import smear_bytes, upload


@pytest.fixture
def api(api_for, alice):
    """A client that authenticates like an external program: token from the token endpoint."""
    return api_for(alice)


@pytest.fixture
def schema(api) -> dict:
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == HTTPStatus.OK
    return response.json()


def operation(schema: dict, operation_id: str) -> tuple[str, str, dict]:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return path, method, op
    raise AssertionError(f"the schema documents no {operation_id}")


def component(schema: dict, ref: str) -> dict:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def body_schema(schema: dict, op: dict, media_type: str) -> dict:
    return component(schema, op["requestBody"]["content"][media_type]["schema"]["$ref"])


def response_fields(schema: dict, op: dict, code: str) -> set[str]:
    ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
    return set(component(schema, ref)["properties"])


def test_the_openapi_schema_is_valid(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_people_fields_that_may_be_empty_are_nullable_in_the_schema(schema):
    """A case nobody withdrew answers ``"withdrawn_by": null``: a schema that says string
    breaks every client generated from it (schemathesis found it)."""
    components = schema["components"]["schemas"]
    for component_name, field in [
        ("Case", "submitted_by"),
        ("Case", "withdrawn_by"),
        ("SmearImage", "uploaded_by"),
        ("SmearImage", "withdrawn_by"),
    ]:
        assert components[component_name]["properties"][field].get("nullable") is True, field


def test_the_schema_documents_why_a_prediction_is_out_of_scope(schema):
    reason = schema["components"]["schemas"]["Prediction"]["properties"]["ood_reason"]
    assert reason["type"] == "string" and reason.get("readOnly", True)
    assert '"blank"' in reason["description"] and "in scope" in reason["description"]


def test_the_schema_is_public_and_documents_the_token_endpoint(alice):
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == HTTPStatus.OK
    token = response.json()["paths"]["/api/auth/token/"]["post"]
    assert {"200", "400"} <= set(token["responses"])
    assert "requestBody" in token


def test_a_client_opens_a_case_and_uploads_images_using_only_the_schema(
    api, schema, alice, queued, django_capture_on_commit_callbacks
):
    path, method, op = operation(schema, "patients_create")
    fields = body_schema(schema, op, "application/json")
    assert {"team", "identifier"} <= set(fields["required"])
    # A bad request first: refused in the documented error shape.
    patients = getattr(api, method)(path, {}, format="json")
    assert patients.status_code == HTTPStatus.BAD_REQUEST
    assert set(patients.json()["error"]["fields"]) >= {"team", "identifier"}
    created = getattr(api, method)(
        path, {"team": alice.teams.get().pk, "identifier": "API-1", "sex": "F"}, format="json"
    )
    assert created.status_code == HTTPStatus.CREATED, created.content
    assert set(created.json()) == response_fields(schema, op, "201")
    patient_id = created.json()["id"]

    path, method, op = operation(schema, "cases_create")
    assert "patient" in body_schema(schema, op, "application/json")["required"]
    case = getattr(api, method)(
        path, {"patient": patient_id, "specimen": "bone_marrow"}, format="json"
    )
    assert case.status_code == HTTPStatus.CREATED, case.content
    assert set(case.json()) == response_fields(schema, op, "201")
    assert case.json()["images_count"] == 0  # an integer, as the schema says, not null
    case_id = case.json()["id"]

    path, method, op = operation(schema, "cases_images_create")
    upload_schema = body_schema(schema, op, "multipart/form-data")
    (file_field,) = [
        name for name, spec in upload_schema["properties"].items() if spec.get("format") == "binary"
    ]
    url = path.replace("{id}", str(case_id))
    for n in range(2):
        image = getattr(api, method)(
            url, {file_field: upload(f"smear-{n}.jpg", smear_bytes(n))}, format="multipart"
        )
        assert image.status_code == HTTPStatus.CREATED, image.content
        assert set(image.json()) == response_fields(schema, op, "201")

    path, method, _ = operation(schema, "cases_submit_create")
    with django_capture_on_commit_callbacks(execute=True):
        submitted = getattr(api, method)(path.replace("{id}", str(case_id)))
    assert submitted.status_code == HTTPStatus.OK

    path, method, _ = operation(schema, "cases_retrieve")
    fetched = getattr(api, method)(path.replace("{id}", str(case_id))).json()
    assert fetched["status"] == "submitted" and fetched["images_count"] == 2
    assert queued == [case_id]

    path, method, _ = operation(schema, "images_file_retrieve")
    image = Case.objects.get(pk=case_id).images.first()
    assert image is not None
    download = getattr(api, method)(path.replace("{id}", str(image.pk)))
    assert download.status_code == HTTPStatus.OK
    assert b"".join(download.streaming_content)[:2] == b"\xff\xd8"


def test_a_refused_upload_answers_in_the_one_error_shape(api, alice_case):
    response = api.post(
        f"/api/cases/{alice_case.pk}/images/",
        {"file": upload("page.png", b"<html>not an image</html>")},
        format="multipart",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    error = response.json()["error"]
    assert error["status"] == 400 and error["code"] == "invalid"
    assert "not an image we accept" in error["fields"]["file"][0]
    assert alice_case.images.count() == 2


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/api/cases/999999/", HTTPStatus.NOT_FOUND, "not_found"),
        ("/api/no-such-thing/", HTTPStatus.NOT_FOUND, "not_found"),
    ],
)
def test_errors_share_one_shape(api, url, status, code):
    response = api.get(url)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"status", "code", "message", "fields"}


def test_an_anonymous_request_is_refused_in_the_error_shape(alice_case):
    response = APIClient().get("/api/cases/")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_wrong_token_is_refused_with_a_challenge(alice_case):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/cases/")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["error"]["code"] == "authentication_failed"


def test_charlie_cannot_reach_team_a_records_through_the_api(api_for, charlie, alice_case):
    client = api_for(charlie)
    image = alice_case.images.first()
    for url in (
        f"/api/cases/{alice_case.pk}/",
        f"/api/cases/{alice_case.pk}/images/",
        f"/api/patients/{alice_case.patient_id}/",
        f"/api/images/{image.pk}/",
        f"/api/images/{image.pk}/file/",
    ):
        assert client.get(url).status_code == HTTPStatus.NOT_FOUND, url
    assert client.get("/api/cases/").json()["count"] == 0
    created = client.post("/api/cases/", {"patient": alice_case.patient_id}, format="json")
    assert created.status_code == HTTPStatus.BAD_REQUEST
    assert created.json()["error"]["fields"] == {"patient": ["No such patient."]}


def test_bob_reads_but_cannot_change_team_a_cases(api_for, bob, alice_case):
    client = api_for(bob)
    assert client.get(f"/api/cases/{alice_case.pk}/").status_code == HTTPStatus.OK
    response = client.patch(f"/api/cases/{alice_case.pk}/", {"stain": "giemsa"}, format="json")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["error"]["code"] == "permission_denied"


def test_case_list_filters_and_paginates(api, alice, alice_case):
    deployed = ModelVersionFactory.create()
    CaseResultFactory.create(
        case=alice_case, model_version=deployed, label="AML", needs_review=True
    )
    body = api.get("/api/cases/", {"predicted": "AML", "status": "submitted"}).json()
    assert body["count"] == 1 and body["results"][0]["result"]["label"] == "AML"
    assert api.get("/api/cases/", {"predicted": "CLL"}).json()["count"] == 0
    assert api.get("/api/cases/", {"patient_identifier": "a-00"}).json()["count"] == 1


def test_predictions_are_read_only_and_exclude_shadow_models(api, alice_case):
    deployed, shadow = (
        ModelVersionFactory.create(name="live"),
        ModelVersionFactory.create(name="shadow", status="shadow"),
    )
    image = alice_case.images.first()
    shown = PredictionFactory.create(image=image, model_version=deployed, label="AML")
    PredictionFactory.create(image=image, model_version=shadow, label="CLL")
    # Stored by the worker with the first predictions: the case's answer names its version.
    CaseResultFactory.create(case=alice_case, model_version=deployed, label="AML")
    CaseResultFactory.create(case=alice_case, model_version=shadow, label="CLL", primary=False)
    body = api.get("/api/predictions/", {"case": alice_case.pk}).json()
    assert [p["id"] for p in body["results"]] == [shown.pk]
    other = api.get("/api/predictions/", {"case": alice_case.pk + 1000}).json()
    assert other["count"] == 0
    assert api.post("/api/predictions/", {}).status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_a_prediction_says_whether_its_heatmap_is_pending_or_why_there_is_none(api, alice_case):
    image = alice_case.images.first()
    prediction = PredictionFactory.create(image=image, model_version=ModelVersionFactory.create())
    CaseResultFactory.create(case=alice_case, model_version=prediction.model_version)
    (shown,) = api.get("/api/predictions/", {"case": alice_case.pk}).json()["results"]
    assert (shown["heatmap_state"], shown["heatmap_reason"]) == ("pending", "")
    predictions_heatmap_refuse(Prediction.objects.all(), HEATMAPS_OFF)
    (shown,) = api.get("/api/predictions/", {"case": alice_case.pk}).json()["results"]
    assert (shown["heatmap_state"], shown["heatmap_reason"]) == ("impossible", HEATMAPS_OFF)


def test_the_docs_page_renders_from_the_schema_without_a_cdn(client_for, alice):
    response = client_for(alice).get("/api/docs/")
    html = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert "/api/cases/{id}/images/" in html and "multipart/form-data" in html
    # Every address the page loads from is the site's own (a random CSRF token in the page
    # may spell "cdn", so look at the addresses, not the whole text).
    loaded = re.findall(r"""src=["']([^"']+)""", html) + re.findall(
        r"""<link[^>]*href=["']([^"']+)""", html
    )
    assert loaded and all(s.startswith("/") and not s.startswith("//") for s in loaded)


def test_a_new_api_user_reads_the_docs_without_a_login_and_learns_how_to_get_a_token(client):
    response = client.get("/api/docs/")
    page = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert "/api/auth/token/" in page and "Authorization: Token" in page
