"""Shared fixtures. Personas as in healthchecks' tests: alice is a clinician in team A,
bob reviews for team A, charlie is a clinician in team B (an outsider to A's cases),
and admin sees everything. The tiny packaged models serve the runtime and the
inference tests alike."""

import shutil
from pathlib import Path

import pytest

from accounts.models import Role
from accounts.services import user_create
from tests.runtime.conftest import package


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Every test stores uploads in its own folder, never in var/ or a developer's media."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "media"},
        },
    }


def _user(username: str, role: str, teams: list[str]):
    user, _ = user_create(username=username, role=role, teams=teams, password="pw-" + username)
    return user


@pytest.fixture
def alice(db):
    return _user("alice", Role.CLINICIAN, ["Team A"])


@pytest.fixture
def bob(db):
    return _user("bob", Role.REVIEWER, ["Team A"])


@pytest.fixture
def charlie(db):
    return _user("charlie", Role.CLINICIAN, ["Team B"])


@pytest.fixture
def admin_user(db):
    return _user("root", Role.ADMIN, [])


@pytest.fixture
def client_for(client):
    """Log a test client in as the given user: `client_for(alice).get(...)`."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """Two valid tiny artifacts, v1 and v2, built once per test session."""
    out = tmp_path_factory.mktemp("artifacts")
    return {v: package(out, version=v, seed=i) for i, v in enumerate(["v1", "v2"], start=1)}


@pytest.fixture
def artifact_copy(artifacts, tmp_path):
    """A private copy of an artifact, free to damage."""

    def copy(version: str = "v1") -> Path:
        target = tmp_path / f"copy-{version}"
        shutil.copytree(artifacts[version], target)
        return target

    return copy
