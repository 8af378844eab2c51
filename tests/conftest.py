"""Fixtures shared by every test folder. Personas as in healthchecks' tests: alice is a
clinician in Team A, bob reviews for Team A, charlie is a clinician in Team B (an
outsider to A's cases), dave reviews for Team B only, and admin sees everything."""

import os
import shutil

import pytest
from django.core.cache import cache
from django_otp import DEVICE_ID_SESSION_KEY
from rest_framework.test import APIClient

from accounts import policies
from accounts.models import Role, Team
from accounts.services import user_create
from cases import services
from cases.models import Case, Patient
from inference import dispatch
from inference.services import analysis
from tests.factories import authenticator_for
from tests.helpers import (
    as_uploads,
    colour_images,
    package,
    persona_password,
    smear_bytes,
    totp_code,
    trained_tiny_model,
)
from tests.objectstore import MotoServer, object_store_open

# TensorFlow's C++ start-up messages say nothing a test reader needs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _storages_in_tmp(settings, tmp_path):
    """Every test stores uploads and model artifacts in its own folders, never in var/."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "media"},
        },
        "models": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "models"},
        },
    }


@pytest.fixture(autouse=True)
def _throttles_reset():
    """API throttle counters (a per-process cache in tests) start at zero in every test."""
    cache.clear()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A real S3-protocol server (moto's standalone one) on loopback, for the whole session."""
    server = MotoServer().start(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def object_store(moto_server, settings, monkeypatch):
    """Uploads and model artifacts in a fresh bucket of the S3-protocol server, configured
    as a deployment would (leukweb.settings.file_storage), reached through a relay that the
    test may cut: ``object_store.relay.cut()``."""
    with object_store_open(moto_server, settings, monkeypatch) as store:
        yield store


def _persona(username: str, role: str, teams: list[str]):
    """A user made as the product makes them; the password is persona_password(username)."""
    user, _ = user_create(
        username=username, role=role, teams=teams, password=persona_password(username)
    )
    return user


@pytest.fixture
def alice(db):
    return _persona("alice", Role.CLINICIAN, ["Team A"])


@pytest.fixture
def bob(db):
    return _persona("bob", Role.REVIEWER, ["Team A"])


@pytest.fixture
def charlie(db):
    return _persona("charlie", Role.CLINICIAN, ["Team B"])


@pytest.fixture
def dave(db):
    return _persona("dave", Role.REVIEWER, ["Team B"])


@pytest.fixture
def admin_user(db):
    return _persona("root", Role.ADMIN, [])


@pytest.fixture
def persona(db):
    """Make another user: ``persona("erin", "reviewer", ["Team A"])``."""
    return _persona


@pytest.fixture
def client_for(client):
    """Log a test client in as the given user: `client_for(alice).get(...)`. A reviewer's
    or administrator's session has passed its second factor (an authenticator is made for
    them), as after a real login; ``verified=False`` stops after the password."""

    def login(user, *, verified: bool = True):
        client.force_login(user)
        if verified and policies.second_factor_required(user):
            session = client.session
            session[DEVICE_ID_SESSION_KEY] = authenticator_for(user).persistent_id
            session.save()
        return client

    return login


@pytest.fixture
def api_for(db):
    """An API client holding a real token for the user, obtained from the token endpoint
    like an external program would (with a one-time code when the user needs one):
    `api_for(alice).get("/api/cases/")`. Users must come from the persona fixtures."""

    def token_client(user) -> APIClient:
        client = APIClient()
        data = {"username": user.username, "password": persona_password(user.username)}
        if policies.second_factor_required(user):
            data["code"] = totp_code(authenticator_for(user))
        response = client.post("/api/auth/token/", data)
        assert response.status_code == 200, response.content
        client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
        return client

    return token_client


@pytest.fixture
def team_a(alice) -> Team:
    return Team.objects.get(name="Team A")


@pytest.fixture
def team_b(charlie) -> Team:
    return Team.objects.get(name="Team B")


@pytest.fixture
def alice_patient(alice, team_a) -> Patient:
    return services.patient_create(user=alice, team=team_a, identifier="A-0001", year_of_birth=1970)


@pytest.fixture
def alice_case(alice, alice_patient, django_capture_on_commit_callbacks) -> Case:
    """A submitted case of Team A with two real smear photographs."""
    with django_capture_on_commit_callbacks():
        return services.case_create(
            user=alice,
            patient=alice_patient,
            uploads=as_uploads(("smear-1.jpg", smear_bytes(0)), ("smear-2.jpg", smear_bytes(1))),
            submit=True,
        )


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Cases handed to the workers, recorded instead of sent: no broker is needed to test
    what is queued and when."""
    sent: list[int] = []

    def send(case_id: int) -> bool:
        sent.append(case_id)
        return True

    monkeypatch.setattr(dispatch, "case_analysis_request", send)
    return sent


@pytest.fixture(autouse=True)
def heatmaps_queued(monkeypatch) -> list[tuple[int, int]]:
    """Heatmap requests (case, model version) that analyses in this process made, recorded
    instead of sent: heatmaps are a heatmap worker's task, tested on their own."""
    sent: list[tuple[int, int]] = []

    def send(case_id: int, model_version_id: int) -> bool:
        sent.append((case_id, model_version_id))
        return True

    monkeypatch.setattr(analysis, "case_heatmaps_request", send)
    return sent


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """Two valid tiny artifacts, v1 and v2, built once per test session."""
    out = tmp_path_factory.mktemp("artifacts")
    return {v: package(out, version=v, seed=i) for i, v in enumerate(["v1", "v2"], start=1)}


@pytest.fixture(scope="session")
def int8_artifact(tmp_path_factory):
    """A tiny model trained to be confident, packaged with an accepted int8 variant
    (calibrated on its training images, scored on fresh ones)."""
    from training.quantize import int8_variant

    test_x, test_y = colour_images(100, seed=1)

    def finish(folder, values):
        values["int8"] = int8_variant(
            folder,
            values["onnx"],
            calibration=colour_images(64, seed=0)[0],
            calibration_source="64 training images of the colour task",
            test_images=test_x,
            test_labels=test_y,
        )

    out = tmp_path_factory.mktemp("int8")
    return package(out, version="int8", seed=3, model=trained_tiny_model(), finish=finish)


@pytest.fixture
def artifact_copy(artifacts, tmp_path):
    """A private copy of an artifact, free to damage: ``artifact_copy("v1")``."""

    def copy(version: str = "v1"):
        target = tmp_path / f"copy-{version}"
        shutil.copytree(artifacts[version], target)
        return target

    return copy
