"""Lockout after repeated failed logins (django-axes), on every login path."""

import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tests.helpers import persona_password

pytestmark = pytest.mark.django_db


def _login(username: str, password: str, client: Client | None = None, address="10.0.0.7"):
    client = client or Client(REMOTE_ADDR=address)
    return client.post("/login/", {"username": username, "password": password})


def _guess(username: str, times: int, address="10.0.0.7"):
    for n in range(times):
        response = _login(username, f"guess-number-{n}", address=address)
    return response


def test_a_password_guesser_is_locked_out_and_even_the_right_password_then_fails(alice):
    first = _guess("alice", 4)
    assert first.status_code == HTTPStatus.OK and b"didn't match" in first.content
    locked = _login("alice", "guess-number-5")
    assert locked.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert b"locked for 15 minutes" in locked.content
    assert int(locked["Retry-After"]) == 15 * 60
    client = Client(REMOTE_ADDR="10.0.0.7")
    right = _login("alice", persona_password("alice"), client=client)
    assert right.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "_auth_user_id" not in client.session


def _visible(response) -> str:
    """The page without its per-request CSRF token."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_the_lockout_page_reads_the_same_for_a_username_that_does_not_exist(alice):
    real = _guess("alice", 5, address="10.0.0.8")
    ghost = _guess("nobody-here", 5, address="10.0.0.9")
    assert real.status_code == ghost.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert _visible(real) == _visible(ghost)


def test_guessing_many_usernames_from_one_address_locks_the_address(alice):
    for n in range(5):
        _login(f"user{n}", "whatever-it-is")
    response = _login("alice", persona_password("alice"))
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    # From elsewhere alice still logs in: the address was locked, not her.
    assert _login("alice", persona_password("alice"), address="10.9.9.9").status_code == 302


def test_a_lockout_ends_after_the_cool_off(alice):
    _guess("alice", 5)
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )
    assert _login("alice", persona_password("alice")).status_code == HTTPStatus.FOUND


def test_the_limit_and_the_cool_off_are_settings(alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=45)
    locked = _guess("alice", 2)
    assert locked.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert b"locked for 45 minutes" in locked.content


def test_the_token_endpoint_counts_towards_the_same_lockout(alice):
    api = APIClient(REMOTE_ADDR="10.0.0.7")
    for n in range(3):
        response = api.post("/api/auth/token/", {"username": "alice", "password": f"g{n}"})
        assert response.status_code == HTTPStatus.BAD_REQUEST
    _guess("alice", 1)
    locked = api.post("/api/auth/token/", {"username": "alice", "password": "g9"})
    assert locked.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert locked.json()["error"]["code"] == "throttled"
    assert int(locked["Retry-After"]) == 15 * 60
    right = api.post(
        "/api/auth/token/", {"username": "alice", "password": persona_password("alice")}
    )
    assert right.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert _login("alice", persona_password("alice")).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_django_admin_login_is_locked_like_the_site_login(admin_user):
    _guess("root", 5)
    client = Client(REMOTE_ADDR="10.0.0.7")
    target = client.get("/admin/login/?next=/admin/")["Location"]
    assert target.startswith("/login/")
    response = client.post(target, {"username": "root", "password": persona_password("root")})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_failed_logins_and_the_lockout_are_audited_without_the_passwords(alice):
    _guess("alice", 6)
    failed = AuditEvent.objects.filter(action=AuditEvent.Action.LOGIN_FAILED)
    assert failed.count() == 6
    assert failed.filter(target_id=str(alice.pk), detail__ip="10.0.0.7").count() == 6
    lockout = AuditEvent.objects.get(action=AuditEvent.Action.LOCKOUT)
    assert lockout.target_repr == "alice" and lockout.detail["failures"] == 5
    assert "guess-number" not in str(list(AuditEvent.objects.values()))


def test_a_failed_login_under_an_unknown_name_is_audited_under_that_name(db):
    _login("mallory", "whatever-it-is")
    event = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN_FAILED)
    assert event.target_repr == "mallory" and event.target_id == "" and event.actor is None


def test_an_admin_unlocks_a_user_from_the_django_admin_and_it_is_audited(
    client_for, admin_user, alice
):
    _guess("alice", 5)
    client = client_for(admin_user)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == HTTPStatus.OK and b"alice" in listing.content
    attempt = AccessAttempt.objects.get()
    client.post(
        "/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": [attempt.pk]}
    )
    assert _login("alice", persona_password("alice")).status_code == HTTPStatus.FOUND
    event = AuditEvent.objects.get(action=AuditEvent.Action.UNLOCK)
    assert event.actor == admin_user and event.target_id == str(alice.pk)
    assert event.detail["via"] == "Django admin"


def test_the_unlock_command_unlocks_a_username_and_it_is_audited(alice, capsys):
    _guess("alice", 5)
    call_command("unlock", "--username", "alice")
    assert "unlocked username 'alice'" in capsys.readouterr().out
    assert _login("alice", persona_password("alice"), address="10.1.1.1").status_code == 302
    assert AuditEvent.objects.get(action=AuditEvent.Action.UNLOCK).detail["via"] == (
        "manage.py unlock"
    )


def test_the_unlock_command_unlocks_an_address(alice):
    for n in range(5):
        _login(f"user{n}", "whatever-it-is")
    call_command("unlock", "--address", "10.0.0.7")
    assert _login("alice", persona_password("alice")).status_code == HTTPStatus.FOUND
    assert AuditEvent.objects.get(action=AuditEvent.Action.UNLOCK).target_repr == "10.0.0.7"


def test_a_right_password_clears_the_earlier_mistakes(alice):
    _guess("alice", 4)
    _login("alice", persona_password("alice"))
    assert _guess("alice", 4).status_code == HTTPStatus.OK
