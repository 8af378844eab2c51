"""Receivers for Django's authentication signals."""

from django.contrib import messages
from django.http import HttpRequest


def logged_out_say_so(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """On a shared ward computer the next person should see that the last one left, and
    why, when it was not their choice (``request.logout_reason``, set by whoever ended
    the session)."""
    if request is not None:
        reason = getattr(request, "logout_reason", "")
        messages.info(request, reason or "You have been logged out.")
