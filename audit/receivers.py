"""Receivers that audit every change to users and teams, wherever it is made: the Django
admin, a command, a service. Sign-in events (logins, lockouts, tokens, second factors)
are audited by the authentication app's services and receivers.

The actor is the user a service names on the instance (``_history_user``, as for
django-simple-history) or else the request's user (audit.context); None for a command.
"""

from __future__ import annotations

from django.db.models import Model, ProtectedError

from accounts.models import Team, User
from audit.context import acting_user
from audit.models import AuditEvent
from audit.services import audit_record

# What an audit event about a user keeps of it: never the password or its hash.
USER_FIELDS = (
    "username",
    "email",
    "first_name",
    "last_name",
    "role",
    "is_active",
    "is_staff",
    "is_superuser",
    "blinded_review",
)
_CHANGES = "_audit_changes"
_CLEARED = "_audit_teams_cleared"


def user_changes_note(sender, instance: User, raw: bool = False, **kwargs) -> None:
    """Before a user is saved: note what changes (old and new values), for post_save."""
    if raw or instance.pk is None:
        return
    update_fields = kwargs.get("update_fields")
    fields = [f for f in USER_FIELDS if update_fields is None or f in update_fields]
    before = User.objects.filter(pk=instance.pk).values(*fields).first() if fields else None
    changes: dict[str, object] = {}
    if before is not None:
        after = {f: getattr(instance, f) for f in fields}
        changes = {f: [before[f], after[f]] for f in fields if before[f] != after[f]}
    # Set by set_password() only; Django's silent re-hash at login clears it first.
    if getattr(instance, "_password", None) is not None:
        changes["password"] = "changed"  # noqa: S105 (that it changed, never the value)
    setattr(instance, _CHANGES, changes)


def user_saved_record(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return
    actor = acting_user(instance)
    if created:
        detail = {f: getattr(instance, f) for f in ("role", "is_staff", "is_superuser")}
        audit_record(actor=actor, action=AuditEvent.Action.CREATE, target=instance, detail=detail)
        return
    changes = getattr(instance, _CHANGES, None)
    setattr(instance, _CHANGES, None)
    if not changes:
        return
    deactivated = changes.get("is_active") == [True, False]
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DEACTIVATE if deactivated else AuditEvent.Action.CHANGE,
        target=instance,
        detail={"changed": changes},
    )


def user_delete_refuse(sender, instance: User, **kwargs) -> None:
    """A user named by the audit log (as actor or as target) is never deleted: the log
    would lose who they were. Deactivate them instead (accounts.services.user_deactivate)."""
    named = (
        AuditEvent.objects.filter(actor=instance).exists()
        or AuditEvent.objects.filter(
            target_type=instance._meta.label_lower, target_id=str(instance.pk)
        ).exists()
    )
    if named:
        raise ProtectedError(
            f"{instance} is named in the audit log: deactivate the user instead of deleting",
            {instance},
        )


def _team_names(pks) -> list[str]:
    return sorted(Team.objects.filter(pk__in=pks).values_list("name", flat=True))


def teams_changed_record(
    sender, instance: Model, action: str, reverse: bool, pk_set: set[int] | None, **kwargs
) -> None:
    """A user joined or left teams (from the user's side, or the team's: ``reverse``)."""
    if action == "pre_clear":
        # What a clear removes is known only before it.
        if reverse:
            setattr(instance, _CLEARED, list(instance.members.values_list("pk", flat=True)))  # type: ignore[attr-defined]
        else:
            setattr(instance, _CLEARED, list(instance.teams.values_list("pk", flat=True)))  # type: ignore[attr-defined]
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    pks = set(pk_set or ()) if action != "post_clear" else set(getattr(instance, _CLEARED, []))
    if not pks:
        return
    key = "added" if action == "post_add" else "removed"
    actor = acting_user(instance)
    if reverse:
        # team.members.add(users): one event per user, each user's history reads it.
        for user in User.objects.filter(pk__in=pks):
            audit_record(
                actor=actor,
                action=AuditEvent.Action.CHANGE,
                target=user,
                detail={"changed": {"teams": {key: [str(instance)]}}},
            )
        return
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CHANGE,
        target=instance,
        detail={"changed": {"teams": {key: _team_names(pks)}}},
    )


def team_name_note(sender, instance: Team, raw: bool = False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    before = Team.objects.filter(pk=instance.pk).values_list("name", flat=True).first()
    changed = before is not None and before != instance.name
    setattr(instance, _CHANGES, {"name": [before, instance.name]} if changed else None)


def team_saved_record(sender, instance: Team, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return
    changes = getattr(instance, _CHANGES, None)
    setattr(instance, _CHANGES, None)
    if created or changes:
        audit_record(
            actor=acting_user(instance),
            action=AuditEvent.Action.CREATE if created else AuditEvent.Action.CHANGE,
            target=instance,
            detail={"changed": changes} if changes else {},
        )


def team_delete_record(sender, instance: Team, **kwargs) -> None:
    audit_record(
        actor=acting_user(instance),
        action=AuditEvent.Action.CHANGE,
        target=instance,
        detail={"deleted": True},
    )
