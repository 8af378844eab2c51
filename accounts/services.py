"""Writes for users and teams."""

import secrets
from collections.abc import Sequence

from django.db import transaction

from accounts.models import Role, Team, User


def user_create(
    *,
    username: str,
    role: str,
    teams: Sequence[str] = (),
    password: str | None = None,
    email: str = "",
) -> tuple[User, str]:
    """Create a user in the given teams (created when missing); return it and its password.

    A given password must pass AUTH_PASSWORD_VALIDATORS (ValidationError otherwise); without
    one a random password is made.
    """
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    password = password or secrets.token_urlsafe(12)
    with transaction.atomic():
        user = User.objects.create_user(
            username=username,
            password=password,
            email=email,
            role=role,
            is_superuser=role == Role.ADMIN,
        )
        user.teams.set([Team.objects.get_or_create(name=name)[0] for name in teams])
    return user, password


DEMO_USERS = [
    ("alice", Role.CLINICIAN, ["Haematology A"]),
    ("bob", Role.REVIEWER, ["Haematology A"]),
    ("charlie", Role.CLINICIAN, ["Haematology B"]),
    ("admin", Role.ADMIN, []),
]


def demo_users_ensure() -> list[tuple[User, str]]:
    """On an empty database, create one user per role; return them with passwords.

    Nothing is created once any user exists, so real accounts are never touched.
    """
    if User.objects.exists():
        return []
    return [user_create(username=name, role=role, teams=teams) for name, role, teams in DEMO_USERS]


def user_blinded_review_set(*, user: User, blinded: bool) -> User:
    """A reviewer's standing choice to see the images before the model's answer."""
    user.blinded_review = blinded
    user.save(update_fields=["blinded_review"])
    return user


def user_deactivate(*, actor: User | None, user: User) -> User:
    """Users are deactivated, never deleted, so that the audit log keeps who did what.
    The change is audited and revokes the user's API tokens (receivers of the save)."""
    if user.is_active:
        user.is_active = False
        # The acting user of the audit event and the token revocations.
        user._history_user = actor  # type: ignore[attr-defined]
        user.save(update_fields=["is_active"])
    return user
