"""Signing in as people do it, in Chromium: a reviewer's first login with enrolment, a
login with a code, a lost phone and a recovery code, a lockout, a page left idle."""

from __future__ import annotations

import json
import re
import time
from base64 import b32decode

from django_otp.oath import hotp

from tests.browser.conftest import PASSWORDS
from tests.browser.test_journeys import _keep

NEW_REVIEWER = """
import json
from accounts.services import user_create
user, password = user_create(username=NAME, role="reviewer", teams=["Team A"])
print(json.dumps({"password": password}))
"""
WITH_RECOVERY_CODES = """
import json
from accounts.services import user_create
from authentication import services
from django_otp.plugins.otp_totp.models import TOTPDevice
user, password = user_create(username=NAME, role="reviewer", teams=["Team A"])
TOTPDevice.objects.create(user=user, name="lost phone", confirmed=True)
print(json.dumps({"password": password, "codes": services._recovery_codes_make(user)}))
"""
AGE_SESSIONS = """
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from accounts.models import User
user = User.objects.get(username=NAME)
for row in Session.objects.all():
    if row.get_decoded().get("_auth_user_id") == str(user.pk):
        session = SessionStore(session_key=row.session_key)
        session["seen_at"] -= 3600
        session.save()
"""


def _shell(live_app, code: str, name: str) -> dict:
    done = live_app.manage("shell", "-c", f"NAME = {name!r}\n{code}")
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(printed[-1]) if printed else {}


def _password_step(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_a_reviewer_sets_up_his_authenticator_at_his_first_login(open_page, live_app):
    password = _shell(live_app, NEW_REVIEWER, "erin")["password"]
    page = open_page()
    _password_step(page, "erin", password)
    page.wait_for_url("**/account/two-factor/**")
    assert page.locator(".qr svg").is_visible()
    # Typed as a person would from the page, not read from the database.
    key = page.inner_text("#secret-key").replace(" ", "")
    _keep(page, "sign-in-enrolment")
    page.goto("/reviews/")  # no way round it
    page.wait_for_url("**/account/two-factor/**")
    page.fill("#id_code", "000000")
    page.click("button:has-text('Turn on two-step verification')")
    assert "not right" in page.inner_text(".card")
    time.sleep(1.1)  # django-otp asks for a second's pause after a wrong code
    page.fill("#id_code", f"{hotp(b32decode(key), int(time.time()) // 30):06d}")
    page.click("button:has-text('Turn on two-step verification')")
    page.wait_for_url("**/recovery-codes/")
    codes = page.locator(".recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-7]{4}-[a-z2-7]{4}", c) for c in codes)
    _keep(page, "sign-in-recovery-codes")
    page.click("text=I have kept them")
    page.wait_for_url("**/reviews/")
    assert "Review" in page.inner_text(".mainnav")
    page.goto("/account/two-factor/recovery-codes/")
    page.wait_for_url("**/account/")
    assert "shown only once" in page.inner_text(".messages")


def test_a_reviewer_logs_in_with_the_code_from_his_phone(login):
    page = login("bob")
    page.goto("/account/")
    assert "A code from your authenticator app is asked at every login" in page.inner_text("main")
    _keep(page, "sign-in-account")


def test_a_wrong_code_keeps_the_reviewer_out(open_page):
    page = open_page()
    _password_step(page, "bob", PASSWORDS["bob"])
    page.wait_for_url("**/login/verify/**")
    _keep(page, "sign-in-verify")
    page.fill("#id_code", "999999")
    page.click("button:has-text('Verify')")
    assert "not right" in page.inner_text(".card")
    page.goto("/reviews/")
    page.wait_for_url("**/login/verify/**")


def test_a_reviewer_who_lost_his_phone_logs_in_with_a_recovery_code(open_page, live_app):
    made = _shell(live_app, WITH_RECOVERY_CODES, "frank")
    page = open_page()
    _password_step(page, "frank", made["password"])
    page.wait_for_url("**/login/verify/**")
    page.fill("#id_code", made["codes"][0].upper())
    page.click("button:has-text('Verify')")
    page.wait_for_url("**/cases/")
    assert "9 left" in page.inner_text(".messages")


def test_a_password_guesser_is_locked_out_and_the_page_says_for_how_long(open_page, live_app):
    page = open_page()
    try:
        for n in range(5):
            _password_step(page, "mallory", f"guess-{n}-of-many")
        message = page.inner_text("[role=alert]")
        assert "locked for 15 minutes" in message
        _keep(page, "sign-in-lockout")
    finally:
        # The suite's own logins come from this address too.
        live_app.manage("unlock", "--username", "mallory", "--address", "127.0.0.1")
    _password_step(page, "alice", PASSWORDS["alice"])
    page.wait_for_url("**/cases/")


def test_a_page_left_open_logs_itself_out_after_the_idle_timeout(login, live_app):
    page = login("alice")
    page.clock.install()
    page.goto("/cases/")
    _shell(live_app, AGE_SESSIONS, "alice")
    page.clock.fast_forward("29:30")
    assert page.locator("#idle-warning").is_visible()
    page.clock.fast_forward("01:00")
    page.wait_for_url("**/login/**")
    assert "after 30 minutes without activity" in page.inner_text(".messages")
    assert "BR-" not in page.content()
    _keep(page, "sign-in-idle-timeout")
