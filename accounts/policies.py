"""Every access rule in one place: who sees which team's records, who edits, who reviews,
who manages models, and when a reviewer may see a model's answer.

The selectors of every app build their queries from these rules, so changing a rule
here changes it on every page and endpoint. Outside one's teams a record does not
exist (the callers answer 404); inside them a role may still be refused (403).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet

from accounts.models import Team, User


def team_scope(user: User, team_field: str) -> Q:
    """A filter keeping only the records of the user's teams (everything for an admin)."""
    if user.is_admin:
        return Q()
    return Q(**{f"{team_field}__in": user.teams.values("pk")})


def can_edit(user: User, team_id: int) -> bool:
    """Whether the user may change a record of this team, not only see it."""
    if user.is_admin:
        return True
    return user.is_clinician and user.teams.filter(pk=team_id).exists()


def creatable_teams(user: User) -> QuerySet[Team]:
    """The teams in which the user may open patients and cases."""
    if user.is_admin:
        return Team.objects.all()
    if user.is_clinician:
        return user.teams.all()
    return Team.objects.none()


def can_review(user: User) -> bool:
    return user.is_reviewer or user.is_admin


def require_reviewer(user: User) -> None:
    if not can_review(user):
        raise PermissionDenied("Only reviewers and administrators review cases.")


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("Only administrators manage models.")


def answers_blinded(user: User) -> bool:
    """A blinded reviewer sees a model's answer only on cases they have already diagnosed,
    on every page and endpoint."""
    return user.is_reviewer and user.blinded_review


def answer_hidden(user: User, *, has_diagnosed: bool) -> bool:
    """Whether this case's model answer is hidden from the user right now."""
    return answers_blinded(user) and not has_diagnosed


def second_factor_required(user: User) -> bool:
    """Whether the user must pass a second factor before any page or endpoint works:
    reviewers and administrators always, everyone when the site says so. A clinician who
    turned it on is asked for it too (the login knows they have a device)."""
    return user.is_reviewer or user.is_admin or settings.SECOND_FACTOR_REQUIRED_FOR_ALL


def second_factor_optional(user: User) -> bool:
    """Whether the user may turn the second factor off again."""
    return not second_factor_required(user)


def health_details_visible(
    user: User | AnonymousUser, *, address: str, proxied: bool, second_factor_passed: bool
) -> bool:
    """Whether /healthz may say what it checked (database type, worker host names, the
    deployed model, the queue, the storage) beside its status: to administrators past their
    second factor, and to callers on this machine's loopback (an operator's curl, a
    container's probe) unless a proxy forwarded the request, as then anyone may be behind
    it. Anonymous callers elsewhere learn only whether the site is up."""
    if user.is_authenticated and isinstance(user, User) and user.is_admin:
        return second_factor_passed
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
    return loopback and not proxied
