"""The API's security schemes in the OpenAPI document, for our authentication classes."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme


class ExpiringTokenScheme(KnoxTokenScheme):
    target_class = "authentication.api.ExpiringTokenAuthentication"
    name = "tokenAuth"


class VerifiedSessionScheme(SessionScheme):
    target_class = "authentication.api.VerifiedSessionAuthentication"
