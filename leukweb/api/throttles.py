"""DRF throttles: past a rate, 429 with Retry-After (rates in REST_FRAMEWORK, README)."""

from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle, UserRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    """The token endpoint, per address: password guessing, whoever the caller says they are."""

    scope = "token"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class WriteRateThrottle(UserRateThrottle):
    """Every request that changes something, per user; reads are not counted."""

    scope = "writes"

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class UploadRateThrottle(ScopedRateThrottle):
    """Image uploads, per user: a view or action opts in with ``throttle_scope="uploads"``."""

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS or getattr(view, "throttle_scope", None) != "uploads":
            return True
        return super().allow_request(request, view)
