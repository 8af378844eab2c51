"""Failures of the infrastructure rather than of the code: the database or the storage.

A request that meets one answers 503 (leukweb.views.server_error for pages,
leukweb.api.errors for the API) saying what happened and that nothing was saved, which
holds because every write that stores files removes them when its transaction fails
(cases.services, cases.files). Anything else stays a plain 500.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import InterfaceError, OperationalError

from cases.files import storage_trouble

# Seconds a client is asked to wait before trying again (the Retry-After header).
RETRY_AFTER = 30

_NOTHING_SAVED = "Nothing from this request was saved; please try again in a few minutes."


@dataclass(frozen=True)
class Outage:
    code: str
    message: str


DATABASE = Outage("database_unavailable", f"The database is unreachable. {_NOTHING_SAVED}")


def outage_of(exc: BaseException | None) -> Outage | None:
    """The outage behind this exception (or the ones it was raised from), else None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OperationalError | InterfaceError):
            return DATABASE
        trouble = storage_trouble(exc)
        if trouble is not None:
            return Outage(trouble.code, f"{trouble.what}. {_NOTHING_SAVED}")
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
