from django.conf import settings
from django.http import HttpRequest

from authentication.http import second_factor_missing


def session_timeout(request: HttpRequest) -> dict:
    """The idle timeout, for the page script that hides a page left open past it, and
    whether the session still owes its second factor (the menu would lead nowhere)."""
    return {
        "session_idle_timeout": settings.SESSION_IDLE_TIMEOUT,
        "second_factor_owed": hasattr(request, "user") and second_factor_missing(request),
    }
