"""The one way to write the audit log."""

from collections.abc import Iterable

from django.db import models

from audit.models import AuditEvent


def known_actor(actor):
    """The user to record as having acted, or None for the system (a command, a worker)."""
    return actor if getattr(actor, "is_authenticated", False) else None


def audit_record(
    *,
    actor,
    action: str,
    target: models.Model,
    case=None,
    detail: dict | None = None,
) -> AuditEvent:
    """Append an event: `actor` did `action` (an AuditEvent.Action) to `target`."""
    return AuditEvent.objects.create(
        actor=known_actor(actor),
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_repr=str(target)[:255],
        case=case,
        detail=detail or {},
    )


def audit_record_about_name(
    *, actor, action: str, target_type: str, name: str, target_id: str = "", detail: dict
) -> AuditEvent:
    """Append an event about something known only by name: a login attempt under a
    username that may belong to nobody, an address that was locked out."""
    return AuditEvent.objects.create(
        actor=known_actor(actor),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_repr=name[:255],
        detail=detail,
    )


def audit_record_read(
    *,
    actor,
    model: type[models.Model],
    ids: Iterable[object],
    where: str,
    detail: dict | None = None,
) -> AuditEvent:
    """One event for a read of many records (a list page, an API list): the ids returned,
    in the event's JSON. One INSERT per request, however long the list."""
    ids = [int(pk) if isinstance(pk, int) else str(pk) for pk in ids]
    label = model._meta.verbose_name_plural if len(ids) != 1 else model._meta.verbose_name
    return AuditEvent.objects.create(
        actor=known_actor(actor),
        action=AuditEvent.Action.VIEW,
        target_type=model._meta.label_lower,
        target_id="",
        target_repr=f"{len(ids)} {label} ({where})"[:255],
        detail={"ids": ids, "where": where, **(detail or {})},
    )
