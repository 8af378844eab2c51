"""How the REST API authenticates: expiring hashed tokens (django-rest-knox) and the
browser's session, the latter only once its second factor is passed."""

from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from authentication import services
from authentication.http import second_factor_missing


class ExpiringTokenAuthentication(TokenAuthentication):
    """knox's token check; the expired tokens it comes across are deleted through the
    audited service rather than silently."""

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        expired = auth_token.expiry is not None and auth_token.expiry <= timezone.now()
        services.tokens_expire(user=auth_token.user)
        return expired


class VerifiedSessionAuthentication(SessionAuthentication):
    """A browser session counts for the API only when it has passed the second factor it
    owes: the password alone opens no reviewer or administrator endpoint."""

    def authenticate(self, request: Request):
        result = super().authenticate(request)
        if result is not None and second_factor_missing(request._request):
            raise exceptions.AuthenticationFailed(
                "This session has not passed its second factor: finish logging in first."
            )
        return result
