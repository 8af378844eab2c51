"""Receivers for Django's authentication signals."""

from django.contrib import messages
from django.http import HttpRequest


def logged_out_say_so(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """On a shared ward computer the next person should see that the last one left."""
    if request is not None:
        messages.info(request, "You have been logged out.")
