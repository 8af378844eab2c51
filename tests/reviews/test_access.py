"""Who reaches what: clinicians only the printable report, reviewers not the registry,
outsiders a 404."""

from http import HTTPStatus

import pytest
from django.urls import URLPattern

from registry import urls as registry_urls
from reviews import urls as review_urls
from tests.factories import ModelVersionFactory, analysed_case, heatmap_attach

REFUSED = {HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND}


def _review_paths(pk: int) -> list[str]:
    """Every route of the reviews and registry apps, with a real primary key and action."""
    paths = []
    for pattern in [*review_urls.urlpatterns, *registry_urls.urlpatterns]:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern).replace("<int:pk>", str(pk))
        paths.append("/" + route.replace("<slug:action>", "deploy"))
    assert not any("<" in path for path in paths), paths
    return paths


@pytest.fixture
def team_a_case(db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version)
    heatmap_attach(case.images.get().predictions.get())
    return case


def test_every_route_is_tested_here():
    assert len(review_urls.urlpatterns) + len(registry_urls.urlpatterns) == 18


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_clinician_reaches_no_reviewer_or_admin_page(client_for, alice, team_a_case, method):
    client = client_for(alice)
    report = f"/reviews/cases/{team_a_case.pk}/report/"  # for everyone who sees the case
    for path in _review_paths(team_a_case.pk):
        if path == report and method == "get":
            continue
        response = getattr(client, method)(path)
        assert response.status_code in REFUSED | {HTTPStatus.METHOD_NOT_ALLOWED}, path
    assert not team_a_case.reviews.exists()


def test_a_reviewer_reaches_no_admin_page(client_for, bob, team_a_case):
    client = client_for(bob)
    for path in _review_paths(team_a_case.pk):
        if path.startswith("/registry/"):
            assert client.get(path).status_code in REFUSED | {HTTPStatus.METHOD_NOT_ALLOWED}, path
            response = client.post(path, {"reason": "x"})
            assert response.status_code in REFUSED | {HTTPStatus.METHOD_NOT_ALLOWED}, path


def test_an_outsider_reviewer_gets_404_for_team_a_cases(client_for, dave, team_a_case):
    client = client_for(dave)
    pk = team_a_case.pk
    prediction = team_a_case.images.get().predictions.get()
    for path in (f"/reviews/cases/{pk}/", f"/reviews/cases/{pk}/report/"):
        assert client.get(path).status_code == HTTPStatus.NOT_FOUND, path
    for path in (f"/reviews/cases/{pk}/verdict/", f"/reviews/cases/{pk}/sign-off/"):
        response = client.post(path, {"diagnosis": "AML"})
        assert response.status_code == HTTPStatus.NOT_FOUND, path
    assert client.get(f"/reviews/predictions/{prediction.pk}/heatmap.png").status_code == 404
    assert client.get("/reviews/").context["page"].paginator.count == 0
    assert client.get("/reviews/predictions/").context["page"].paginator.count == 0
    assert not team_a_case.reviews.exists()


def test_bob_gets_the_heatmap_of_his_teams_prediction(client_for, bob, team_a_case):
    prediction = team_a_case.images.get().predictions.get()
    response = client_for(bob).get(f"/reviews/predictions/{prediction.pk}/heatmap.png")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"\x89PNG-heatmap"
    page = client_for(bob).get(f"/reviews/cases/{team_a_case.pk}/").content.decode()
    assert f"/reviews/predictions/{prediction.pk}/heatmap.png" in page
    assert "heat-toggle" in page


def test_another_teams_heatmap_is_a_404_and_the_own_teams_clinician_a_403(
    client_for, alice, charlie, team_a_case
):
    prediction = team_a_case.images.get().predictions.get()
    url = f"/reviews/predictions/{prediction.pk}/heatmap.png"
    assert client_for(charlie).get(url).status_code == HTTPStatus.NOT_FOUND
    assert client_for(alice).get(url).status_code == HTTPStatus.FORBIDDEN
