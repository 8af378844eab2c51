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
