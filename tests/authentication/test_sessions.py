"""Sessions on shared ward computers: idle and absolute timeouts, ending with the browser;
logins and logouts audited."""

import time
from http import HTTPStatus

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from authentication.signals import SEEN_AT, SIGNED_IN_AT
from tests.helpers import persona_password

pytestmark = pytest.mark.django_db


def _age(client: Client, *, seen: int = 0, signed_in: int = 0) -> None:
    """Move the session's clocks back by so many seconds."""
    session = client.session
    session[SEEN_AT] -= seen
    session[SIGNED_IN_AT] -= signed_in
    session.save()


def test_a_session_left_idle_on_a_ward_computer_ends_and_the_login_page_says_why(client_for, alice):
    client = client_for(alice)
    _age(client, seen=settings.SESSION_IDLE_TIMEOUT + 1)
    response = client.get("/cases/")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "/login/?next=/cases/"
    login_page = client.get(response["Location"])
    assert "after 30 minutes without activity" in login_page.content.decode()
    assert client.get("/cases/").status_code == HTTPStatus.FOUND
    logout = AuditEvent.objects.get(action=AuditEvent.Action.LOGOUT)
    assert "without activity" in logout.detail["reason"]


def test_a_page_refreshing_itself_does_not_keep_an_idle_session_alive(client_for, alice):
    client = client_for(alice)
    _age(client, seen=settings.SESSION_IDLE_TIMEOUT - 60)
    refresh = client.get("/cases/", headers={"X-Live-Refresh": "1"})
    assert refresh.status_code == HTTPStatus.OK
    _age(client, seen=61)
    ended = client.get("/cases/", headers={"X-Live-Refresh": "1"})
    assert ended.status_code == HTTPStatus.UNAUTHORIZED  # the page reloads itself on this
    assert client.get("/cases/").status_code == HTTPStatus.FOUND


def test_the_person_using_the_page_keeps_the_session_alive(client_for, alice):
    client = client_for(alice)
    _age(client, seen=settings.SESSION_IDLE_TIMEOUT - 60)
    assert client.get(reverse("account:keepalive")).status_code == HTTPStatus.NO_CONTENT
    _age(client, seen=61)
    assert client.get("/cases/").status_code == HTTPStatus.OK


def test_a_session_ends_at_the_absolute_limit_however_busy(client_for, alice):
    client = client_for(alice)
    _age(client, signed_in=settings.SESSION_ABSOLUTE_TIMEOUT + 1)
    response = client.get("/cases/")
    assert response.status_code == HTTPStatus.FOUND
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("as every session is" in m for m in messages)


def test_the_idle_timeout_is_a_setting(client_for, alice, settings):
    settings.SESSION_IDLE_TIMEOUT = 300
    client = client_for(alice)
    _age(client, seen=301)
    assert client.get("/cases/").status_code == HTTPStatus.FOUND
    assert 'data-idle-timeout="300"' in client_for(alice).get("/cases/").content.decode()


def test_the_session_cookie_ends_with_the_browser(alice):
    client = Client()
    client.post("/login/", {"username": "alice", "password": persona_password("alice")})
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["expires"] == "" and cookie["max-age"] == ""
    assert cookie["httponly"]


def test_a_reviewer_session_times_out_on_the_api_too(client_for, bob):
    client = client_for(bob)
    assert client.get("/api/cases/").status_code == HTTPStatus.OK
    _age(client, seen=settings.SESSION_IDLE_TIMEOUT + 1)
    assert client.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED


def test_logins_and_logouts_are_audited_with_the_address(alice):
    client = Client(REMOTE_ADDR="10.4.4.4")
    client.post("/login/", {"username": "alice", "password": persona_password("alice")})
    client.post("/logout/")
    login = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN)
    logout = AuditEvent.objects.get(action=AuditEvent.Action.LOGOUT)
    assert login.actor == logout.actor == alice
    assert login.detail["ip"] == logout.detail["ip"] == "10.4.4.4"
    assert logout.created >= login.created
    assert time.time() - login.created.timestamp() < 60
