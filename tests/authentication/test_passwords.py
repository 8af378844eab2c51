"""Password rules on every path that sets one, and how passwords are hashed."""

from http import HTTPStatus

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import Role, User
from accounts.services import DEMO_USERS, demo_users_ensure, user_create
from tests.helpers import persona_password

pytestmark = pytest.mark.django_db

WEAK = ["a", "short-pw-1", "password1234", "123456789012", "dana-the-user"]


@pytest.mark.parametrize("weak", WEAK)
def test_create_user_prompt_password_refuses_a_weak_password_for_an_admin(monkeypatch, weak):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": weak)
    with pytest.raises(CommandError, match="password refused"):
        call_command("create_user", "dana-the-user", "--role", "admin", "--prompt-password")
    assert not User.objects.filter(username="dana-the-user").exists()


def test_create_user_prompt_password_accepts_a_good_one_typed_twice(monkeypatch):
    answers = iter(["lymphoblast-Ward-3", "lymphoblast-Ward-3"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    call_command("create_user", "dana", "--role", "admin", "--prompt-password")
    assert User.objects.get(username="dana").check_password("lymphoblast-Ward-3")


def test_create_user_refuses_two_different_passwords(monkeypatch):
    answers = iter(["lymphoblast-Ward-3", "lymphoblast-Ward-4"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="differ"):
        call_command("create_user", "dana", "--role", "admin", "--prompt-password")


def test_createsuperuser_without_a_prompt_refuses_a_weak_password(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a")
    with pytest.raises(CommandError, match="too short"):
        call_command("createsuperuser", "--noinput", "--username", "eve", "--email", "e@x.org")
    assert not User.objects.filter(username="eve").exists()


def test_the_user_service_refuses_a_weak_password(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        user_create(username="frank", role=Role.REVIEWER, password="frank123")


def test_the_django_admin_refuses_a_weak_password_for_a_new_user(client_for, admin_user):
    response = client_for(admin_user).post(
        "/admin/accounts/user/add/",
        {"username": "gina", "password1": "gina", "password2": "gina", "role": "clinician"},
    )
    assert response.status_code == HTTPStatus.OK
    assert "too short" in response.content.decode()
    assert not User.objects.filter(username="gina").exists()


def test_changing_ones_password_runs_the_rules(client_for, alice):
    response = client_for(alice).post(
        reverse("account:password"),
        {"old_password": persona_password("alice"), "new_password1": "x", "new_password2": "x"},
    )
    assert response.status_code == HTTPStatus.OK and "too short" in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(persona_password("alice"))


def test_the_demo_users_passwords_pass_the_rules(db):
    created = demo_users_ensure()
    assert [user.username for user, _ in created] == [name for name, _, _ in DEMO_USERS]
    for user, password in created:
        from django.contrib.auth.password_validation import validate_password

        validate_password(password, user)
        assert user.check_password(password)


def test_production_settings_hash_passwords_with_argon2(settings):
    from leukweb import settings as production

    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS
    hashed = make_password("lymphoblast-Ward-3")
    assert identify_hasher(hashed).algorithm == "argon2" and hashed.startswith("argon2$argon2id$")
    assert check_password("lymphoblast-Ward-3", hashed)
    minimum = production.AUTH_PASSWORD_VALIDATORS[1]
    assert minimum == {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    }


def test_an_old_hash_is_upgraded_to_argon2_at_the_next_login(settings, alice):
    from leukweb import settings as production

    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS
    User.objects.filter(pk=alice.pk).update(
        password=make_password(persona_password("alice"), hasher="pbkdf2_sha256")
    )
    from django.test import Client

    Client().post("/login/", {"username": "alice", "password": persona_password("alice")})
    alice.refresh_from_db()
    assert alice.password.startswith("argon2$")
