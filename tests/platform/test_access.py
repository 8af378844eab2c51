"""Logging in, roles, and what an anonymous visitor can reach."""

import re
from http import HTTPStatus

import pytest
from django.core.management import CommandError, call_command
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Role, User
from inference import health
from inference.models import ModelVersion, WorkerHeartbeat
from leukweb.celery import app as celery_app
from tests.helpers import persona_password

# The API's documentation and schema hold no patient data: how to call it, for anyone.
PUBLIC = {"login/", "healthz", "admin/login/", "api/docs/", "api/schema/"}


def _walk(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def _sample_path(route: str) -> str:
    """A concrete path for a route: converters get plausible values, regexes are cleaned."""
    path = re.sub(r"<(int:)?\w+>", "1", route)
    path = re.sub(r"<uuid:\w+>", "00000000-0000-0000-0000-000000000001", path)
    path = re.sub(r"<(str|slug|path):\w+>", "x", path)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path)
    return "/" + path.lstrip("^").rstrip("$").replace("\\", "")


def all_paths():
    return sorted({_sample_path(route) for route in _walk(get_resolver().url_patterns)})


@pytest.mark.django_db
@pytest.mark.parametrize("path", all_paths())
def test_an_anonymous_visitor_gets_nothing_but_the_login_page(client, path):
    response = client.get(path)
    if path.lstrip("/") in PUBLIC:
        return
    assert response.status_code in {
        HTTPStatus.FOUND,
        HTTPStatus.UNAUTHORIZED,
        HTTPStatus.FORBIDDEN,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.METHOD_NOT_ALLOWED,
    }, f"{path} answered {response.status_code}"
    if response.status_code == HTTPStatus.FOUND:
        assert "login" in response["Location"], response["Location"]


@pytest.mark.django_db
def test_a_user_logs_in_with_username_and_password(client, alice):
    response = client.post("/login/", {"username": "alice", "password": persona_password("alice")})
    assert response.status_code == HTTPStatus.FOUND
    assert client.get("/", follow=True).status_code == HTTPStatus.OK


@pytest.mark.django_db
def test_a_wrong_password_is_refused(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == HTTPStatus.OK
    assert b"didn't match" in response.content


@pytest.mark.django_db
def test_only_administrators_reach_the_django_admin(client_for, alice, admin_user):
    assert client_for(alice).get("/admin/").status_code == HTTPStatus.FOUND
    assert client_for(admin_user).get("/admin/").status_code == HTTPStatus.OK


@pytest.mark.django_db
def test_create_user_gives_a_role_teams_and_a_password(capsys):
    call_command("create_user", "dana", "--role", "reviewer", "--team", "Lab X", "--team", "Lab Y")
    out = capsys.readouterr().out
    dana = User.objects.get(username="dana")
    assert dana.role == Role.REVIEWER
    assert sorted(t.name for t in dana.teams.all()) == ["Lab X", "Lab Y"]
    found = re.search(r"password: (\S+)", out)
    assert found is not None
    assert dana.check_password(found.group(1))
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_user", "dana", "--role", "reviewer")


@pytest.mark.django_db
def test_an_admin_user_can_use_the_django_admin():
    call_command("create_user", "erin", "--role", "admin")
    erin = User.objects.get(username="erin")
    assert erin.is_staff and erin.is_superuser and erin.is_admin


@pytest.mark.django_db
def test_demo_users_are_created_once_with_their_credentials_printed(capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("ensure_demo_users")
    out = capsys.readouterr().out
    assert set(User.objects.values_list("role", flat=True)) == set(Role.values)
    for user in User.objects.all():
        found = re.search(rf"{user.username}\s+(\S+)", out)
        assert found is not None
        assert user.check_password(found.group(1))
    assert (tmp_path / "demo-credentials.txt").read_text().count("\n") == User.objects.count()
    call_command("ensure_demo_users")
    assert "no demo users created" in capsys.readouterr().out
    assert User.objects.count() == 4


@pytest.mark.django_db
def test_healthz_is_503_while_no_model_is_deployed(client):
    response = client.get("/healthz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["model"] == {"ok": False, "detail": "no model is deployed"}


@pytest.mark.django_db
def test_healthz_is_200_when_database_broker_worker_and_model_are_there(client):
    from django.utils import timezone

    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="w1@host", pid=1, started=now, last_seen=now)
    ModelVersion.objects.create(
        name="m", version="1", architecture="cml1", classes=["a", "b"], input_size=32,
        artifact="m-1", content_hash="sha256:0", manifest={}, status=ModelVersion.Status.DEPLOYED,
    )  # fmt: skip
    response = client.get("/healthz")
    assert response.status_code == HTTPStatus.OK, response.json()
    assert response.json()["status"] == "ok"


def test_a_dead_broker_is_reported_not_raised():
    original = celery_app.conf.broker_url
    celery_app.conf["broker_url"] = "redis://127.0.0.1:1/0"
    try:
        result = health.check_broker()
    finally:
        celery_app.conf["broker_url"] = original
    assert not result.ok
    assert "unreachable" in result.detail


@pytest.mark.django_db
def test_times_read_the_same_with_their_zone_on_pages_and_in_the_admin(client_for, admin_user):
    from audit.models import AuditEvent
    from audit.services import audit_record

    audit_record(actor=admin_user, action=AuditEvent.Action.VIEW, target=admin_user)
    event = AuditEvent.objects.get(action=AuditEvent.Action.VIEW)
    shown = event.created.strftime("%Y-%m-%d %H:%M") + " UTC"
    admin_page = client_for(admin_user).get("/admin/audit/auditevent/").content.decode()
    assert shown in admin_page and "p.m." not in admin_page and "a.m." not in admin_page
