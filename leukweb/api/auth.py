"""The API's token endpoint: a token for a username, a password and (for anyone with a
second factor) a one-time code; revoking it again. Documented like every other endpoint."""

from math import ceil

from django.contrib.auth import authenticate
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import api_user
from authentication import selectors, services
from authentication.http import client_address
from authentication.throttles import TokenRateThrottle
from clinic.api.serializers import ErrorSerializer


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    code = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text=(
            "A one-time code from your authenticator app, or a recovery code: required for "
            "reviewers, administrators and anyone who turned on two-step verification."
        ),
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown this once: only a hash of it is kept.")
    prefix = serializers.CharField(help_text="How the account page names this token.")
    expiry = serializers.DateTimeField()


class TokenView(APIView):
    throttle_classes = [TokenRateThrottle]

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    def perform_authentication(self, request: Request) -> None:
        # Asking for a token needs no credentials but those in the body: a stale token
        # still sent in the header must not stand in the way of a new one.
        if request.method != "POST":
            super().perform_authentication(request)

    @extend_schema(
        summary="Exchange a username, password and one-time code for an API token",
        description=(
            "Send the token as `Authorization: Token <token>` with every other request. "
            "It expires after the hours the site sets (see `expiry`) and is revoked on "
            "logout, on a password, role or second-factor change and by `DELETE`. "
            "Form-encoded or JSON. Too many failed logins lock the username and the address "
            "for a while (429 with Retry-After), as do too many requests."
        ),
        request=TokenRequestSerializer,
        responses={
            200: TokenSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="Wrong username, password or one-time code"
            ),
            403: OpenApiResponse(
                ErrorSerializer, description="Enrol a second factor on the web first"
            ),
            429: OpenApiResponse(ErrorSerializer, description="Locked out or throttled"),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # django-axes sees this login as it sees the login page's: same counts, same lockout.
        http_request = request._request
        user = authenticate(http_request, username=data["username"], password=data["password"])
        if getattr(http_request, "axes_locked_out", False):
            remaining = selectors.lockout_remaining(
                username=data["username"], address=client_address(http_request)
            )
            raise exceptions.Throttled(
                wait=max(60, ceil(remaining.total_seconds())),
                detail="Too many failed logins for this username or from this address.",
            )
        if user is None:
            raise exceptions.ValidationError("Wrong username or password.")
        try:
            token, secret = services.token_create(
                user=user, code=data["code"], address=client_address(http_request)
            )
        except services.SecondFactorNeeded as exc:
            if not exc.enrolled:
                raise exceptions.PermissionDenied(
                    "Your role needs a second factor: log in on the web once to set it up."
                ) from exc
            raise exceptions.ValidationError(
                {"code": ["A one-time code from your authenticator app is required."]}
            ) from exc
        except services.WrongCode as exc:
            raise exceptions.ValidationError({"code": ["That code is not right."]}) from exc
        except services.SecondFactorThrottled as exc:
            raise exceptions.Throttled(wait=exc.seconds, detail="Too many wrong codes.") from exc
        return Response(
            TokenSerializer(
                {"token": secret, "prefix": token.token_key, "expiry": token.expiry}
            ).data
        )

    @extend_schema(
        summary="Revoke the token this request is made with (or all of yours)",
        parameters=[
            OpenApiParameter(
                "all",
                OpenApiTypes.BOOL,
                description="Revoke every token of yours, not only this one",
            )
        ],
        request=None,
        responses={
            204: OpenApiResponse(description="Revoked"),
            400: OpenApiResponse(ErrorSerializer, description="No token in this request"),
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated"),
        },
    )
    def delete(self, request: Request) -> Response:
        user = api_user(request)
        if request.query_params.get("all") in ("true", "1"):
            services.tokens_revoke_all(user=user, actor=user, reason="revoked by its owner")
        elif isinstance(request.auth, AuthToken):
            services.token_revoke(actor=user, token=request.auth, reason="revoked by its owner")
        else:
            raise exceptions.ValidationError(
                "This request carries no token: add ?all=true to revoke all of yours."
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
