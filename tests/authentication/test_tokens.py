"""API tokens: who gets one, how long it lives, what ends it, where it is (never) shown."""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Role
from audit.models import AuditEvent
from authentication.tasks import tokens_expire
from tests.factories import authenticator_for
from tests.helpers import persona_password, totp_code

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token/"


def _ask(user, **extra):
    data = {"username": user.username, "password": persona_password(user.username), **extra}
    return APIClient().post(TOKEN_URL, data, format="json")


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_reviewer_gets_a_token_only_with_a_valid_one_time_code(bob):
    device = authenticator_for(bob)
    without = _ask(bob)
    assert without.status_code == HTTPStatus.BAD_REQUEST
    assert without.json()["error"]["fields"] == {
        "code": ["A one-time code from your authenticator app is required."]
    }
    wrong = _ask(bob, code="000000")
    assert wrong.status_code == HTTPStatus.BAD_REQUEST
    assert wrong.json()["error"]["fields"] == {"code": ["That code is not right."]}
    device.refresh_from_db()
    device.throttle_reset()
    right = _ask(bob, code=totp_code(device))
    assert right.status_code == HTTPStatus.OK
    assert _client(right.json()["token"]).get("/api/cases/").status_code == HTTPStatus.OK
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_CREATE, actor=bob).count() == 1


def test_a_reviewer_who_never_enrolled_gets_no_token_with_his_password_alone(bob, admin_user):
    for user in (bob, admin_user):
        response = _ask(user)
        assert response.status_code == HTTPStatus.FORBIDDEN
        assert "second factor" in response.json()["error"]["message"]
    assert not AuthToken.objects.exists()


def test_a_clinician_without_a_second_factor_needs_only_her_password(alice):
    assert _ask(alice).status_code == HTTPStatus.OK


def test_a_token_is_stored_only_as_a_hash(alice):
    token = _ask(alice).json()["token"]
    assert token.startswith("lw_")
    row = AuthToken.objects.get(user=alice)
    assert token not in row.digest and len(row.digest) == 128
    with connection.cursor() as cursor:
        cursor.execute("SELECT digest, token_key FROM knox_authtoken")
        stored = cursor.fetchall()
    assert all(token not in column for line in stored for column in line)
    assert row.token_key == token[:15]


def test_a_token_answers_with_its_expiry_after_the_configured_hours(alice, settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(hours=3)}
    body = _ask(alice).json()
    expiry = AuthToken.objects.get(user=alice).expiry
    assert abs((expiry - timezone.now()) - timedelta(hours=3)) < timedelta(minutes=1)
    assert body["prefix"] == body["token"][:15] and body["expiry"]


def test_an_expired_token_stops_working_and_its_expiry_is_audited(alice):
    token = _ask(alice).json()["token"]
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    response = _client(token).get("/api/cases/")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert not AuthToken.objects.exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_EXPIRE)
    assert event.target_id == str(alice.pk) and event.detail["prefix"] == token[:15]


def test_the_hourly_sweep_deletes_and_audits_tokens_that_expired_unused(alice, charlie):
    _ask(alice), _ask(charlie)
    AuthToken.objects.filter(user=alice).update(expiry=timezone.now() - timedelta(hours=1))
    assert tokens_expire() == 1
    assert list(AuthToken.objects.values_list("user__username", flat=True)) == ["charlie"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_EXPIRE).count() == 1


def test_a_stolen_token_stops_working_after_logout(client_for, alice):
    stolen = _client(_ask(alice).json()["token"])
    assert stolen.get("/api/cases/").status_code == HTTPStatus.OK
    client_for(alice).post("/logout/")
    assert stolen.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    revoked = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert revoked.detail["reason"] == "logout"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LOGOUT, actor=alice).exists()


def test_a_stolen_token_stops_working_after_the_owner_changes_her_password(client_for, alice):
    stolen = _client(_ask(alice).json()["token"])
    new = "a-much-better-passphrase-7"
    response = client_for(alice).post(
        reverse("account:password"),
        {
            "old_password": persona_password("alice"),
            "new_password1": new,
            "new_password2": new,
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    assert stolen.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED


def test_a_stolen_token_stops_working_after_an_admin_resets_the_password(
    client_for, admin_user, alice
):
    stolen = _client(_ask(alice).json()["token"])
    new = "a-much-better-passphrase-7"
    response = client_for(admin_user).post(
        f"/admin/accounts/user/{alice.pk}/password/",
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert response.status_code == HTTPStatus.FOUND, response.content
    assert stolen.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert event.detail["reason"] == "password changed"


def test_a_token_stops_working_when_its_owner_changes_role(alice):
    stolen = _client(_ask(alice).json()["token"])
    alice.role = Role.REVIEWER
    alice.save()
    assert stolen.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert event.detail["reason"] == "role changed from clinician to reviewer"


def test_a_token_stops_working_when_its_owner_is_deactivated(alice):
    stolen = _client(_ask(alice).json()["token"])
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert stolen.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    assert not AuthToken.objects.exists()


def test_a_new_login_timestamp_or_a_rehash_revokes_nothing(alice):
    _ask(alice)
    alice.last_login = timezone.now()
    alice.save(update_fields=["last_login"])
    alice.refresh_from_db()
    alice.check_password(persona_password("alice"))
    alice.save()
    assert AuthToken.objects.count() == 1


def test_its_owner_revokes_a_token_with_delete(alice):
    first, second = _ask(alice).json()["token"], _ask(alice).json()["token"]
    assert _client(first).delete(TOKEN_URL).status_code == HTTPStatus.NO_CONTENT
    assert _client(first).get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    assert _client(second).get("/api/cases/").status_code == HTTPStatus.OK
    assert _client(second).delete(TOKEN_URL + "?all=true").status_code == HTTPStatus.NO_CONTENT
    assert not AuthToken.objects.exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_REVOKE).count() == 2


def test_delete_without_a_token_says_what_to_do(alice):
    client = APIClient()
    client.force_login(alice)
    response = client.delete(TOKEN_URL)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "?all=true" in response.json()["error"]["message"]
    assert APIClient().delete(TOKEN_URL).status_code == HTTPStatus.UNAUTHORIZED


def test_a_stale_token_in_the_header_does_not_stop_a_new_login(alice):
    client = _client("lw_not-a-token-any-more")
    data = {"username": "alice", "password": persona_password("alice")}
    assert client.post(TOKEN_URL, data).status_code == HTTPStatus.OK


def test_the_account_page_lists_tokens_by_prefix_and_never_shows_one(client_for, alice, charlie):
    token = _ask(alice).json()["token"]
    page = client_for(alice).get("/account/").content.decode()
    assert token[:15] in page and token not in page
    # Charlie cannot revoke it: another user's prefix is a 404 for him.
    response = client_for(charlie).post(reverse("account:token_revoke", args=[token[:15]]))
    assert response.status_code == HTTPStatus.NOT_FOUND
    client = client_for(alice)
    client.post(reverse("account:token_revoke", args=[token[:15]]))
    assert _client(token).get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED


def test_the_django_admin_never_shows_a_token(client_for, admin_user, alice):
    token = _ask(alice).json()["token"]
    row = AuthToken.objects.get()
    client = client_for(admin_user)
    listing = client.get("/admin/knox/authtoken/")
    assert listing.status_code == HTTPStatus.OK and token[:15] in listing.content.decode()
    detail = client.get(reverse("admin:knox_authtoken_change", args=[row.pk]))
    for page in (listing, detail):
        # Only the hash's use as the row's key remains (in links); the token never shows.
        html = page.content.decode()
        assert token not in html and "Digest" not in html and token[:15] in html
    client.post("/admin/knox/authtoken/", {"action": "revoke", "_selected_action": [row.pk]})
    assert _client(token).get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    assert AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE).actor == admin_user


def test_the_schema_documents_the_code_the_expiry_and_revoking(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    token = schema["paths"]["/api/auth/token/"]
    request = schema["components"]["schemas"]["TokenRequestRequest"]
    assert {"username", "password", "code"} <= set(request["properties"])
    assert {"200", "400", "403", "429"} <= set(token["post"]["responses"])
    assert "delete" in token and "all" in {p["name"] for p in token["delete"]["parameters"]}
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
