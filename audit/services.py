"""The one way to write the audit log."""

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
