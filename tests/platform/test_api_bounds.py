"""The API answers every malformed or hostile request in its own JSON error shape with a
4xx, never a 500 or an HTML page: ids beyond any primary key (found by schemathesis), a
write to an unknown path, a forged cross-site write, a method a view does not take."""

from http import HTTPStatus

import pytest
from django.test import Client

from cases.models import Case

HUGE = "99999999999999999999999"
NEGATIVE = "-797288806873589476229120"


def _api_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response.content[:300]
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    return error


@pytest.mark.parametrize(
    "query",
    [
        f"/api/cases/?patient={HUGE}",
        f"/api/predictions/?case={NEGATIVE}",
        f"/api/predictions/?image={HUGE}",
        f"/api/predictions/?model_version={HUGE}",
        f"/api/images/?case={HUGE}",
        f"/api/patients/?team={HUGE}",
        "/api/cases/?patient=0",
        "/api/cases/?patient=1.5",
        "/api/cases/?patient=1e400",
        "/api/cases/?patient=NaN",
        f"/api/cases/?patient={2**63}",
    ],
)
def test_an_id_filter_out_of_any_primary_keys_range_is_a_400_not_a_500(api_for, alice, query):
    field = query.split("?")[1].split("=")[0]
    assert field in _api_error(api_for(alice).get(query), HTTPStatus.BAD_REQUEST)["fields"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/cases/{HUGE}/",
        f"/api/images/{HUGE}/",
        f"/api/patients/{HUGE}/",
        f"/api/predictions/{HUGE}/",
        f"/api/cases/{HUGE}/images/",
        f"/api/images/{HUGE}/thumbnail/",
        f"/api/cases/{NEGATIVE}/",
    ],
)
def test_an_id_in_the_path_beyond_any_primary_key_is_a_404(api_for, alice, path):
    _api_error(api_for(alice).get(path), HTTPStatus.NOT_FOUND)


def test_another_teams_id_in_a_filter_looks_exactly_like_a_missing_one(
    api_for, charlie, alice_case
):
    """The filters are not choices among every record: they cannot reveal that an id
    exists in another team."""
    api = api_for(charlie)
    image = alice_case.images.first()
    assert image is not None
    for query in (
        f"/api/predictions/?image={image.pk}",
        f"/api/images/?case={alice_case.pk}",
        f"/api/cases/?patient={alice_case.patient_id}",
        f"/api/predictions/?image={image.pk + 1000}",
    ):
        response = api.get(query)
        assert response.status_code == HTTPStatus.OK and response.json()["count"] == 0, query


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_to_an_unknown_api_path_gets_the_apis_404_not_the_html_csrf_page(alice, method):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    _api_error(getattr(client, method)("/api/no-such-thing/", {}), HTTPStatus.NOT_FOUND)


def test_a_forged_cross_site_write_to_the_api_is_refused_in_json(alice, alice_patient):
    """A signed-in browser tricked into posting without the CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(
        "/api/cases/", {"patient": alice_patient.pk}, content_type="application/json"
    )
    _api_error(response, HTTPStatus.FORBIDDEN)
    assert not Case.objects.filter(patient=alice_patient).exists()


def test_a_forged_cross_site_form_gets_the_sites_403_page(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/patients/new/", {"identifier": "X-1"})
    page = response.content.decode()
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert 'class="topbar"' in page and "reload the page" in page and "CSRF" not in page


@pytest.mark.parametrize(
    ("method", "path"),
    [("delete", "/api/cases/"), ("put", "/api/predictions/1/"), ("post", "/api/docs/")],
)
def test_a_method_the_endpoint_does_not_take_is_a_json_405(api_for, alice, method, path):
    response = getattr(api_for(alice), method)(path)
    _api_error(response, HTTPStatus.METHOD_NOT_ALLOWED)
    assert response["Allow"]
