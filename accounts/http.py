"""The signed-in user as views see it, in one place for the type checker.

Django and DRF type `request.user` as possibly anonymous; the login checks in front of
the views guarantee it is not, and these two names say so.
"""

from typing import cast

from django.http import HttpRequest
from rest_framework.request import Request

from accounts.models import User


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a page: LoginRequiredMiddleware sends anyone signed out to the login
    page before the view runs (a view marked @login_not_required takes an HttpRequest)."""

    user: User


def api_user(request: Request) -> User:
    """The caller of an endpoint: DRF's default IsAuthenticated permission answers 401
    before the view runs, so the user is never anonymous. DRF fixes the signatures of
    viewset methods, hence a function rather than a request type."""
    return cast(User, request.user)
