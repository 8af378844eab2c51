from django.conf import settings
from django.http import HttpRequest


def session_timeout(request: HttpRequest) -> dict:
    """The idle timeout, for the page script that hides a page left open past it."""
    return {"session_idle_timeout": settings.SESSION_IDLE_TIMEOUT}
