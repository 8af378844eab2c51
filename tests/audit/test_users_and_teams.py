"""Users are deactivated, never deleted, and every change to a user, a role, a team or a
user's teams is an audit event naming who made it (the administrator, through the
request), so the log survives the people in it."""

from http import HTTPStatus

import pytest
from django.db import transaction
from django.db.models import ProtectedError
from knox.models import AuthToken

from accounts.models import Role, Team, User
from accounts.services import user_deactivate
from audit.models import AuditEvent
from cases import services as case_services

pytestmark = pytest.mark.django_db

USERS = "/admin/accounts/user/"


def _events(user: User, action: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            target_type="accounts.user", target_id=str(user.pk), action=action
        ).order_by("pk")
    )


def _admin_change_form(user: User, **changes) -> dict:
    """The Django admin's change form for the user as it stands, with ``changes``."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": user.role,
        "teams": [str(pk) for pk in user.teams.values_list("pk", flat=True)],
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    for key, value in changes.items():
        if value is False:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def test_deleting_a_user_keeps_their_audit_trail(alice, team_a, admin_user, client_for, api_for):
    """The attack: delete a user so that their past actions lose their name (the actor
    became NULL). The delete is refused, the admin offers deactivation instead, and
    every event keeps the user and their username."""
    patient = case_services.patient_create(user=alice, team=team_a, identifier="P-1")
    api = api_for(alice)
    created = AuditEvent.objects.get(target_type="cases.patient", target_id=str(patient.pk))
    assert created.actor == alice and created.actor_username == "alice"

    with pytest.raises(ProtectedError):
        alice.delete()

    client = client_for(admin_user)
    assert client.get(f"{USERS}{alice.pk}/delete/").status_code == HTTPStatus.FORBIDDEN
    assert client.post(f"{USERS}{alice.pk}/delete/", {"post": "yes"}).status_code == (
        HTTPStatus.FORBIDDEN
    )
    response = client.post(USERS, {"action": "deactivate", "_selected_action": [alice.pk]})
    assert response.status_code == HTTPStatus.FOUND

    alice.refresh_from_db()
    assert not alice.is_active
    assert not AuthToken.objects.filter(user=alice).exists()
    assert api.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    (deactivated,) = _events(alice, AuditEvent.Action.DEACTIVATE)
    assert deactivated.actor == admin_user
    assert deactivated.detail["changed"]["is_active"] == [True, False]
    revoked = AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_REVOKE, target_id=alice.pk)
    assert [e.actor for e in revoked] == [admin_user]

    created.refresh_from_db()
    assert created.actor == alice and created.actor_username == "alice"


def test_a_user_named_only_as_the_target_of_events_cannot_be_deleted_either(db):
    """Even a user who never acted is in the log (their creation): deleting them would
    leave events about nobody."""
    user = User.objects.create_user(username="erin", password="a long passphrase 1")
    # Refused inside Django's delete transaction, which is rolled back.
    with pytest.raises(ProtectedError), transaction.atomic():
        user.delete()
    assert User.objects.filter(pk=user.pk).exists()


def test_the_deactivation_service_is_audited_and_revokes_tokens(alice, admin_user, api_for):
    api = api_for(alice)
    user_deactivate(actor=admin_user, user=alice)
    assert api.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED
    (event,) = _events(alice, AuditEvent.Action.DEACTIVATE)
    assert event.actor == admin_user


def test_a_role_change_to_admin_in_the_django_admin_names_the_admin_who_made_it(
    alice, admin_user, client_for, api_for
):
    """The attack: quietly raise a clinician to administrator. The change is an event with
    the old and new role and the administrator as actor; the clinician's tokens end."""
    api = api_for(alice)
    response = client_for(admin_user).post(
        f"{USERS}{alice.pk}/change/", _admin_change_form(alice, role=Role.ADMIN)
    )
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:2000]

    (event,) = [
        e for e in _events(alice, AuditEvent.Action.CHANGE) if "role" in e.detail["changed"]
    ]
    assert event.actor == admin_user and event.actor_username == "root"
    assert event.detail["changed"]["role"] == ["clinician", "admin"]
    assert event.detail["changed"]["is_staff"] == [False, True]
    assert api.get("/api/cases/").status_code == HTTPStatus.UNAUTHORIZED


def test_a_team_change_in_the_django_admin_is_audited_with_the_teams_added_and_removed(
    alice, team_b, admin_user, client_for
):
    response = client_for(admin_user).post(
        f"{USERS}{alice.pk}/change/", _admin_change_form(alice, teams=[str(team_b.pk)])
    )
    assert response.status_code == HTTPStatus.FOUND
    by_admin = [e for e in _events(alice, AuditEvent.Action.CHANGE) if e.actor == admin_user]
    # The admin form sets the teams: one removal and one addition.
    changes = [e.detail["changed"]["teams"] for e in by_admin]
    assert len(changes) == 2
    assert {"removed": ["Team A"]} in changes and {"added": ["Team B"]} in changes


def test_a_team_joined_from_the_teams_side_is_audited_on_the_user(alice, charlie):
    Team.objects.get(name="Team B").members.add(alice)
    event = _events(alice, AuditEvent.Action.CHANGE)[-1]
    assert event.detail["changed"]["teams"] == {"added": ["Team B"]}


def test_a_user_created_in_the_django_admin_is_audited_with_the_admin_as_actor(
    admin_user, client_for
):
    response = client_for(admin_user).post(
        f"{USERS}add/",
        {
            "username": "frank",
            "password1": "correct horse battery staple",
            "password2": "correct horse battery staple",
            "usable_password": "true",
            "role": Role.REVIEWER,
        },
    )
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:3000]
    frank = User.objects.get(username="frank")
    (event,) = _events(frank, AuditEvent.Action.CREATE)
    assert event.actor == admin_user and event.detail["role"] == Role.REVIEWER


def test_a_password_change_is_audited_without_the_password(alice):
    alice.set_password("another long passphrase 2")
    alice.save()
    event = _events(alice, AuditEvent.Action.CHANGE)[-1]
    assert event.detail == {"changed": {"password": "changed"}}
    assert "passphrase" not in str(event.detail) and "argon2" not in str(event.detail)


def test_a_login_does_not_count_as_a_change_of_the_user(alice, client):
    """last_login and the silent re-hash of the password are not changes anyone made."""
    from tests.helpers import persona_password

    before = len(_events(alice, AuditEvent.Action.CHANGE))
    client.post("/login/", {"username": "alice", "password": persona_password("alice")})
    assert AuditEvent.objects.filter(action="login", target_id=str(alice.pk)).exists()
    assert len(_events(alice, AuditEvent.Action.CHANGE)) == before


def test_a_team_created_and_renamed_is_audited(admin_user):
    team = Team.objects.create(name="Ward 7")
    team.name = "Ward 7 (haematology)"
    team.save()
    events = AuditEvent.objects.filter(target_type="accounts.team", target_id=str(team.pk))
    assert [e.action for e in events.order_by("pk")] == ["create", "change"]
    assert events.get(action="change").detail == {
        "changed": {"name": ["Ward 7", "Ward 7 (haematology)"]}
    }
