"""Reads of the audit log. Callers check access to the record first."""

from dataclasses import dataclass

from audit.models import AuditEvent

HISTORY_LENGTH = 50


@dataclass(frozen=True)
class CaseHistory:
    """A case's latest events, and how many access events were left out of them."""

    events: list[AuditEvent]
    access_hidden: int


def case_history(*, case_id: int, access: bool = False) -> CaseHistory:
    """The case's story, newest first: what was done to it (created, changed, submitted,
    reviewed, withdrawn…), and who viewed, downloaded or exported it only when `access`.

    Every page view adds an access event, so shown by default they would bury the rest.
    """
    events = AuditEvent.objects.filter(case_id=case_id).select_related("actor")
    if access:
        return CaseHistory(events=list(events[:HISTORY_LENGTH]), access_hidden=0)
    access_events = events.filter(action__in=AuditEvent.ACCESS_ACTIONS)
    return CaseHistory(
        events=list(events.exclude(action__in=AuditEvent.ACCESS_ACTIONS)[:HISTORY_LENGTH]),
        access_hidden=access_events.count(),
    )
