"""Who is acting in this request: the one place signal receivers and the field history
learn it, so that a change made by an administrator names the administrator.

The request (not its user) is kept: DRF authenticates a token inside the view, after the
middleware has run, and sets the user on the same request then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def current_request() -> HttpRequest | None:
    return _request.get()


def current_actor():
    """The signed-in user of the request being served, or None (a command, a worker, a
    signed-out visitor)."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if getattr(user, "is_authenticated", False) else None


@contextmanager
def acting_request(request: HttpRequest) -> Iterator[None]:
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


class ActingUserMiddleware:
    """Makes the request's user the acting user of everything this request changes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with acting_request(request):
            return self.get_response(request)


def acting_user(instance=None):
    """Who changes ``instance``: the user a service names on it (``_history_user``, as
    django-simple-history reads it), else the request's user, else nobody (a worker)."""
    explicit = getattr(instance, "_history_user", None)
    return explicit if explicit is not None else current_actor()


def history_user(instance=None, request=None, **kwargs):
    """django-simple-history's get_user: see acting_user."""
    return acting_user(instance)
