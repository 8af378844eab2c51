"""Session timeouts and the second factor, enforced in front of every page."""

import time
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from authentication import selectors
from authentication.http import second_factor_missing
from authentication.signals import SEEN_AT, SIGNED_IN_AT

# Sent by the pages' own background refreshes (static/js/live.js): they keep a page
# current but are not the person doing anything, so they do not keep a session alive.
BACKGROUND_HEADER = "X-Live-Refresh"
# Seconds between writes of the last-seen time: a session is not saved on every request.
SEEN_RESOLUTION = 30


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class SessionTimeoutMiddleware:
    """Logs a session out after SESSION_IDLE_TIMEOUT seconds without a request from the
    person, or SESSION_ABSOLUTE_TIMEOUT seconds after the login, and says why on the
    login page. The API's token requests carry no session and are not affected."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(time.time())
            session = request.session
            reason = self._expired(session, now)
            background = request.headers.get(BACKGROUND_HEADER) == "1"
            if reason and background:
                # The page reloads itself on this; that navigation logs out and says why.
                return JsonResponse({"logged_out": reason}, status=HTTPStatus.UNAUTHORIZED)
            if reason:
                request.logout_reason = reason  # type: ignore[attr-defined]
                logout(request)
                if not request.path_info.startswith("/api/"):
                    return redirect_to_login(request.get_full_path())
            elif not background and now - session.get(SEEN_AT, 0) >= SEEN_RESOLUTION:
                session[SEEN_AT] = now
                session.setdefault(SIGNED_IN_AT, now)
        return self.get_response(request)

    @staticmethod
    def _expired(session, now: int) -> str:
        seen, signed_in = session.get(SEEN_AT), session.get(SIGNED_IN_AT)
        if seen is not None and now - seen > settings.SESSION_IDLE_TIMEOUT:
            return (
                f"You were logged out after {_minutes(settings.SESSION_IDLE_TIMEOUT)} "
                "without activity. Log in again to carry on."
            )
        if signed_in is not None and now - signed_in > settings.SESSION_ABSOLUTE_TIMEOUT:
            return (
                f"You were logged out {_minutes(settings.SESSION_ABSOLUTE_TIMEOUT)} after "
                "logging in, as every session is. Log in again to carry on."
            )
        return ""


def second_factor_exempt(view):
    """Mark a view that a signed-in user may open before passing the second factor."""
    view.second_factor_exempt = True
    return view


class SecondFactorMiddleware:
    """A signed-in user who owes a second factor (reviewers, administrators, anyone with
    SECOND_FACTOR_REQUIRED_FOR_ALL, anyone who has one) reaches no page until they pass
    it: they are sent to enter a code, or to enrol when they have no authenticator yet.
    The API applies the same rule in authentication.api.VerifiedSessionAuthentication."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        if not getattr(view_func, "login_required", True):
            return None  # public pages: the login page itself, /healthz, the API docs
        if getattr(view_func, "second_factor_exempt", False):
            return None
        if not second_factor_missing(request):
            return None
        user = request.user
        target = (
            "account:verify"
            if selectors.authenticator_of(user) is not None  # type: ignore[arg-type]
            else "account:enrol"
        )
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
