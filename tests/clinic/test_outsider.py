"""Charlie (Team B) reaches for every route in the project with Team A's ids.

The routes come from the URL resolver itself, so a route added later is walked
too; a route with a parameter this test does not know fails it, on purpose.
"""

from http import HTTPStatus

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from cases import services
from cases.models import Case, Patient, SmearImage
from inference.models import Prediction
from tests.factories import CaseResultFactory, ModelVersionFactory, PredictionFactory
from tests.helpers import as_uploads, smear_bytes

SECRET = "TEAM-A-SECRET-ID"
OBJECT_ID = 9001
# Values for URL parameters: every object id is Team A's record numbered OBJECT_ID.
PARAMETERS = {
    "pk": OBJECT_ID,
    "object_id": OBJECT_ID,
    "id": OBJECT_ID,
    "app_label": "accounts",
    "content_type_id": 1,
    "format": "json",
    "action": "deploy",
    "change": "deploy",
    "url": "anything/",
    # An API token's prefix (the account page's revoke button).
    "prefix": "lw_0123456789ab",
}
REFUSED = {HTTPStatus.NOT_FOUND, HTTPStatus.FORBIDDEN, HTTPStatus.UNAUTHORIZED}


def walk(patterns, prefix: str = "", namespace: str = ""):
    """Yield (full name or None, route text, parameter names) for every URL pattern."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else None
            yield name, prefix + str(entry.pattern), list(entry.pattern.regex.groupindex)


def url_for(name: str | None, route: str, params: list[str]) -> str:
    unknown = set(params) - set(PARAMETERS)
    assert not unknown, f"teach test_outsider what to put in {unknown} of {route}"
    kwargs = {p: PARAMETERS[p] for p in params}
    if name:
        return reverse(name, kwargs=kwargs)
    # Unnamed routes (the admin's catch-all): fill the route text by hand.
    path = route.lstrip("^").rstrip("$")
    for param, value in kwargs.items():
        path = path.replace(f"(?P<{param}>.*)", str(value))
    return "/" + path


@pytest.fixture
def team_a_records(alice, team_a, django_capture_on_commit_callbacks):
    """Team A's patient, case, image, prediction and result, all numbered OBJECT_ID."""
    patient = Patient.objects.create(pk=OBJECT_ID, team=team_a, identifier=SECRET)
    case = Case.objects.create(pk=OBJECT_ID, patient=patient, team=team_a, submitted_by=alice)
    services.case_images_add(user=alice, case=case, uploads=as_uploads(("a.jpg", smear_bytes(0))))
    SmearImage.objects.filter(case=case).update(id=OBJECT_ID, original_name=SECRET)
    image = SmearImage.objects.get(pk=OBJECT_ID)
    version = ModelVersionFactory.create()
    made = PredictionFactory.create(image=image, model_version=version, label="AML")
    Prediction.objects.filter(pk=made.pk).update(id=OBJECT_ID)
    CaseResultFactory.create(case=case, model_version=version, label="AML")
    return case


def test_every_route_refuses_charlie_or_shows_him_nothing_of_team_a(
    client_for, charlie, team_a_records
):
    client = client_for(charlie)
    routes = list(walk(get_resolver().url_patterns))
    assert len(routes) > 30
    checked = 0
    for name, route, params in routes:
        url = url_for(name, route, params)
        for method in ("get", "post"):
            # Logged in afresh each time: POST /logout/ must not turn charlie anonymous.
            client.force_login(charlie)
            response = getattr(client, method)(url)
            body = b"" if response.streaming else response.content
            where = f"{method.upper()} {url} ({name or route})"
            assert SECRET.encode() not in body, f"{where} leaked Team A's data"
            if params and any(p in ("pk", "object_id", "id") for p in params):
                # A route about one record: Team A's must not exist for charlie.
                refused = response.status_code in REFUSED
                to_login = response.status_code == HTTPStatus.FOUND and "login" in response.get(
                    "Location", ""
                )
                assert refused or to_login or response.status_code == 405, (
                    f"{where} answered {response.status_code}"
                )
            checked += 1
    assert checked == 2 * len(routes)
    print(f"walked {len(routes)} routes")


def test_alice_herself_reaches_her_records_so_the_walk_tests_something(
    client_for, alice, team_a_records
):
    client = client_for(alice)
    for url in (
        reverse("clinic:case_detail", args=[OBJECT_ID]),
        reverse("clinic:patient_detail", args=[OBJECT_ID]),
        reverse("clinic:image_file", args=[OBJECT_ID]),
        reverse("api:case-detail", args=[OBJECT_ID]),
        reverse("api:prediction-detail", args=[OBJECT_ID]),
    ):
        assert client.get(url).status_code == HTTPStatus.OK, url
