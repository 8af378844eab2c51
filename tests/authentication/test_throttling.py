"""DRF throttles: 429 with Retry-After on the token endpoint, writes and uploads."""

import os
import uuid
from http import HTTPStatus

import pytest
from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.helpers import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates for one test: ``rates(writes="3/minute")``. DRF's throttles read
    the rates once, at import, into this class attribute."""

    def set_rates(**scoped: str) -> None:
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **scoped}
        )

    return set_rates


def test_password_guessing_on_the_token_endpoint_gets_429_with_retry_after(alice, rates):
    rates(token="3/minute")
    client = APIClient(REMOTE_ADDR="10.0.0.20")
    for n in range(3):
        names = {"username": f"someone{n}", "password": "wrong-password"}
        assert client.post("/api/auth/token/", names).status_code == HTTPStatus.BAD_REQUEST
    response = client.post("/api/auth/token/", {"username": "alice", "password": "x"})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "throttled"
    other = APIClient(REMOTE_ADDR="10.0.0.21")
    assert other.post("/api/auth/token/", {"username": "a", "password": "b"}).status_code == 400


def test_a_runaway_client_is_throttled_on_writes_but_may_still_read(
    api_for, alice, alice_patient, rates
):
    rates(writes="3/minute")
    api = api_for(alice)
    for n in range(3):
        body = {"identifier": f"T-{n}", "team": alice_patient.team_id}
        assert api.post("/api/patients/", body, format="json").status_code == HTTPStatus.CREATED
    refused = api.post("/api/patients/", {"identifier": "T-9", "team": alice_patient.team_id})
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert int(refused["Retry-After"]) > 0
    assert api.get("/api/patients/").status_code == HTTPStatus.OK


def test_uploads_have_a_rate_of_their_own(api_for, alice, alice_patient, rates, queued):
    rates(uploads="2/minute")
    api = api_for(alice)
    case = api.post("/api/cases/", {"patient": alice_patient.pk}, format="json").json()
    url = f"/api/cases/{case['id']}/images/"
    for n in range(2):
        upload = SimpleUploadedFile(f"{n}.png", image_bytes(color=(n, 2, 3)), "image/png")
        assert api.post(url, {"file": upload}).status_code == HTTPStatus.CREATED
    upload = SimpleUploadedFile("3.png", image_bytes(color=(9, 2, 3)), "image/png")
    refused = api.post(url, {"file": upload})
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS and refused["Retry-After"]
    assert api.get(url).status_code == HTTPStatus.OK
    # Other writes go on: uploads did not use up the write rate.
    changed = api.patch(f"/api/cases/{case['id']}/", {"stain": "giemsa"}, format="json")
    assert changed.status_code == HTTPStatus.OK


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")
def test_throttle_counts_live_in_redis_where_every_web_process_sees_them(rates, settings):
    """As deployed: the counters are in Redis, so another web process (here a cache client
    of its own) sees the same budget. A fresh key prefix keeps this test's counters apart
    from anything else in that database, and nothing is flushed."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": f"test-throttle-{uuid.uuid4().hex}",
        }
    }
    rates(token="2/minute")
    client = APIClient(REMOTE_ADDR="10.0.0.30")
    for _ in range(2):
        client.post("/api/auth/token/", {"username": "x", "password": "y"})
    another_process = caches.create_connection("default")
    assert len(another_process.get("throttle_token_10.0.0.30")) == 2
    response = client.post("/api/auth/token/", {"username": "x", "password": "y"})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    another_process.delete("throttle_token_10.0.0.30")
