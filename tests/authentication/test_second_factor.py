"""The second factor: who must pass it, enrolling, logging in with a code or a recovery
code, resets; each test named for what it stops."""

import time
from base64 import b32decode
from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import hotp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from authentication import services
from tests.factories import authenticator_for
from tests.helpers import totp_code

pytestmark = pytest.mark.django_db


def _location(response) -> str:
    assert response.status_code == HTTPStatus.FOUND, response.status_code
    return response["Location"]


def _verify(client: Client, code: str, next_url: str = "/"):
    return client.post(reverse("account:verify"), {"code": code, "next": next_url})


@pytest.mark.parametrize(
    "path", ["/reviews/", "/reviews/predictions/", "/reviews/agreement/", "/cases/", "/account/"]
)
def test_a_reviewer_without_a_second_factor_cannot_open_the_review_queue(password_login, bob, path):
    client, response = password_login(bob)
    assert _location(response).startswith(reverse("account:enrol"))
    assert _location(client.get(path)).startswith(reverse("account:enrol"))


@pytest.mark.parametrize("path", ["/registry/", "/admin/", "/admin/accounts/user/"])
def test_an_admin_with_only_a_password_reaches_no_registry_or_django_admin_page(
    password_login, admin_user, path
):
    authenticator_for(admin_user)
    client, response = password_login(admin_user)
    assert _location(response).startswith(reverse("account:verify"))
    assert _location(client.get(path)).startswith(reverse("account:verify"))


@pytest.mark.parametrize("path", ["/api/cases/", "/api/predictions/", "/api/patients/"])
def test_a_session_with_only_a_password_opens_no_reviewer_or_admin_api(
    password_login, bob, admin_user, path
):
    for user in (bob, admin_user):
        client, _ = password_login(user)
        response = client.get(path)
        assert response.status_code == HTTPStatus.UNAUTHORIZED
        assert "second factor" in response.json()["error"]["message"]


def test_the_django_admin_login_is_the_site_login_with_its_second_factor(client):
    response = client.get("/admin/login/?next=/admin/audit/auditevent/")
    assert _location(response) == "/login/?next=/admin/audit/auditevent/"


def test_a_reviewer_enrols_with_a_qr_code_or_a_typed_key_and_sees_recovery_codes_once(
    password_login, bob
):
    client, response = password_login(bob, next_url="/reviews/")
    page = client.get(_location(response))
    html = page.content.decode()
    assert page.status_code == HTTPStatus.OK
    assert "<svg" in html and "<script" not in html.split("<main", 1)[1].split("</main>")[0]
    device = TOTPDevice.objects.get(user=bob, confirmed=False)
    key = "".join(page.context["key_groups"])
    assert key.replace(" ", "") in html.replace(" ", "")
    # What an app computes from the key as typed, not from the database.
    code_from_key = f"{hotp(b32decode(key), int(time.time()) // 30):06d}"
    wrong = client.post(reverse("account:enrol"), {"code": "000000", "next": "/reviews/"})
    assert wrong.status_code == HTTPStatus.OK and "not right" in wrong.content.decode()
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)
    done = client.post(reverse("account:enrol"), {"code": code_from_key, "next": "/reviews/"})
    assert _location(done) == reverse("account:recovery_codes")
    shown = client.get(reverse("account:recovery_codes"))
    codes = shown.context["codes"]
    assert len(codes) == 10 and all(code.replace("-", "") in _tokens(bob) for code in codes)
    assert 'href="/reviews/"' in shown.content.decode()
    again = client.get(reverse("account:recovery_codes"))
    assert _location(again) == reverse("account:home")
    assert client.get("/reviews/").status_code == HTTPStatus.OK
    assert AuditEvent.objects.filter(action=AuditEvent.Action.MFA_ENROL, actor=bob).exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.MFA_FAIL, actor=bob).exists()


def _tokens(user) -> set[str]:
    return set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))


def test_a_reviewer_logs_in_with_the_code_from_the_app_and_lands_where_he_was_going(
    password_login, bob
):
    device = authenticator_for(bob)
    client, response = password_login(bob, next_url="/reviews/agreement/")
    assert _location(response).startswith(reverse("account:verify"))
    done = _verify(client, totp_code(device), "/reviews/agreement/")
    assert _location(done) == "/reviews/agreement/"
    assert client.get("/reviews/agreement/").status_code == HTTPStatus.OK
    event = AuditEvent.objects.get(action=AuditEvent.Action.MFA_VERIFY)
    assert event.actor == bob and event.detail["method"] == "authenticator app"


def test_a_stolen_password_without_the_phone_gets_nowhere_and_is_audited(password_login, bob):
    authenticator_for(bob)
    client, _ = password_login(bob)
    refused = _verify(client, "123456")
    assert refused.status_code == HTTPStatus.OK and "not right" in refused.content.decode()
    assert 'href="/reviews/"' not in refused.content.decode()  # no menu that leads nowhere
    assert _location(client.get("/reviews/")).startswith(reverse("account:verify"))
    assert AuditEvent.objects.filter(action=AuditEvent.Action.MFA_FAIL, actor=bob).count() == 1


def test_guessing_codes_is_slowed_down_after_each_wrong_one(password_login, bob):
    device = authenticator_for(bob)
    client, _ = password_login(bob)
    _verify(client, "123456")
    slowed = _verify(client, totp_code(device))
    assert "Too many wrong codes" in slowed.content.decode()
    assert _location(client.get("/reviews/")).startswith(reverse("account:verify"))


def test_a_code_seen_over_a_shoulder_cannot_be_used_again(password_login, bob):
    device = authenticator_for(bob)
    code = totp_code(device)
    first, _ = password_login(bob)
    assert _verify(first, code).status_code == HTTPStatus.FOUND
    second, _ = password_login(bob)
    replay = _verify(second, code)
    assert replay.status_code == HTTPStatus.OK and "not right" in replay.content.decode()


def test_a_recovery_code_logs_in_once_and_says_how_many_are_left(password_login, bob):
    authenticator_for(bob)
    codes = services._recovery_codes_make(bob)
    client, _ = password_login(bob)
    done = _verify(client, codes[0][:4].upper() + " - " + codes[0][4:], "/reviews/")
    assert _location(done) == "/reviews/"
    assert "9 left" in client.get("/reviews/").content.decode()
    other, _ = password_login(bob)
    assert _verify(other, codes[0]).status_code == HTTPStatus.OK  # used up
    event = AuditEvent.objects.get(action=AuditEvent.Action.MFA_VERIFY)
    assert event.detail["method"] == "recovery code" and event.detail["recovery_codes_left"] == 9


def test_a_clinician_is_asked_for_no_code_until_she_turns_it_on(password_login, alice):
    client, response = password_login(alice)
    assert _location(response) == "/"
    assert client.get("/cases/").status_code == HTTPStatus.OK
    assert "Turn on two-step verification" in client.get("/account/").content.decode()
    enrol = client.get(reverse("account:enrol"))
    assert enrol.status_code == HTTPStatus.OK
    device = TOTPDevice.objects.get(user=alice, confirmed=False)
    assert _location(client.post(reverse("account:enrol"), {"code": totp_code(device)})) == reverse(
        "account:recovery_codes"
    )
    later, response = password_login(alice)
    assert _location(response).startswith(reverse("account:verify"))
    assert _location(later.get("/cases/")).startswith(reverse("account:verify"))


def test_a_clinician_turns_it_off_only_with_a_current_code(password_login, alice, client_for):
    device = authenticator_for(alice)
    client, _ = password_login(alice)
    _verify(client, totp_code(device))
    client.post(reverse("account:second_factor_off"), {"code": "000000"})
    assert TOTPDevice.objects.filter(user=alice).exists()
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)
    client.post(reverse("account:second_factor_off"), {"code": totp_code(device)})
    assert not TOTPDevice.objects.filter(user=alice).exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.MFA_RESET, actor=alice).exists()


def test_a_reviewer_cannot_turn_his_second_factor_off(client_for, bob):
    device = authenticator_for(bob)
    client = client_for(bob)
    client.post(reverse("account:second_factor_off"), {"code": totp_code(device)})
    assert TOTPDevice.objects.filter(user=bob).exists()


def test_a_site_can_require_a_second_factor_of_every_clinician(password_login, alice, settings):
    settings.SECOND_FACTOR_REQUIRED_FOR_ALL = True
    client, response = password_login(alice)
    assert _location(response).startswith(reverse("account:enrol"))
    assert _location(client.get("/cases/")).startswith(reverse("account:enrol"))


def test_someone_with_only_the_password_cannot_enrol_a_phone_of_their_own(password_login, bob):
    authenticator_for(bob)
    client, _ = password_login(bob)
    assert _location(client.get(reverse("account:enrol"))).startswith(reverse("account:verify"))
    assert not TOTPDevice.objects.filter(user=bob, confirmed=False).exists()


def test_an_offsite_next_is_not_followed_after_the_code(password_login, bob):
    device = authenticator_for(bob)
    client, _ = password_login(bob)
    assert _location(_verify(client, totp_code(device), "https://evil.example/")) == "/"


def test_an_admin_resets_a_lost_phone_from_the_django_admin_and_it_is_audited(
    client_for, admin_user, bob, api_for
):
    lost = authenticator_for(bob)
    services._recovery_codes_make(bob)
    bobs_api = api_for(bob)
    client = client_for(admin_user)
    response = client.post(
        "/admin/otp_totp/totpdevice/",
        {"action": "reset", "_selected_action": [lost.pk]},
    )
    assert response.status_code == HTTPStatus.FOUND
    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert not StaticDevice.objects.filter(user=bob).exists()
    assert bobs_api.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    event = AuditEvent.objects.get(action=AuditEvent.Action.MFA_RESET)
    assert event.actor == admin_user and event.target_id == str(bob.pk)


def test_reset_second_factor_command_removes_the_devices_audited(bob, capsys):
    from django.core.management import call_command

    authenticator_for(bob)
    call_command("reset_second_factor", "bob")
    assert not TOTPDevice.objects.filter(user=bob).exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.MFA_RESET)
    assert event.actor is None and "reset_second_factor" in event.detail["via"]


def test_the_django_admin_never_shows_an_authenticator_key_or_a_recovery_code(
    client_for, admin_user, bob
):
    device = authenticator_for(bob)
    codes = services._recovery_codes_make(bob)
    client = client_for(admin_user)
    pages = [
        client.get("/admin/otp_totp/totpdevice/"),
        client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/"),
    ]
    assert client.get("/admin/otp_static/staticdevice/").status_code == HTTPStatus.NOT_FOUND
    for page in pages:
        assert page.status_code == HTTPStatus.OK
        html = page.content.decode()
        assert device.key not in html and "bob" in html
        assert not any(code in html for code in codes)
