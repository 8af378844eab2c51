"""The API's token endpoint, documented like every other endpoint."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken

from clinic.api.serializers import ErrorSerializer


class TokenView(ObtainAuthToken):
    @extend_schema(
        summary="Exchange a username and password for an API token",
        description=(
            "Send the token as `Authorization: Token <key>` with every other request. "
            "Form-encoded or JSON."
        ),
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("Token", {"token": serializers.CharField()}),
            400: OpenApiResponse(ErrorSerializer, description="Wrong username or password"),
        },
        auth=[],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)
