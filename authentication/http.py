"""What the sign-in pages, the middleware and the API read off a request."""

from axes.helpers import get_client_ip_address
from django.http import HttpRequest

from accounts import policies
from accounts.models import User

# Set at the password step for a user who has a second factor: until they pass it, every
# page but the second-factor ones sends them there.
SECOND_FACTOR_PENDING = "second_factor_pending"


def client_address(request: HttpRequest) -> str | None:
    """The caller's address as the lockout sees it (django-axes' reading of it)."""
    return get_client_ip_address(request)


def second_factor_missing(request: HttpRequest) -> bool:
    """Whether this signed-in session still owes its second factor."""
    user = request.user
    if not user.is_authenticated or user.is_verified():  # type: ignore[attr-defined]
        return False
    assert isinstance(user, User)
    return policies.second_factor_required(user) or bool(request.session.get(SECOND_FACTOR_PENDING))
