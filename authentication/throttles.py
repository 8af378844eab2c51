"""DRF throttles: past a rate, 429 with Retry-After (rates in REST_FRAMEWORK, README). The
page uploader counts against the same per-user upload rate (upload_wait)."""

import logging
import math
from types import SimpleNamespace

from django.http import HttpRequest
from redis.exceptions import RedisError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class OpenWhileCountersDown:
    """The counters live in Redis (the broker too): while it is down, requests go through
    uncounted and it is logged, so that a broker outage does not stop clinicians' uploads
    with 500s. Failed logins still lock out: django-axes counts them in the database."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            logger.warning("API throttle counters unreachable, request not counted: %s", exc)
            return True


class TokenRateThrottle(OpenWhileCountersDown, SimpleRateThrottle):
    """The token endpoint, per address: password guessing, whoever the caller says they are."""

    scope = "token"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class WriteRateThrottle(OpenWhileCountersDown, UserRateThrottle):
    """Every request that changes something, per user; reads are not counted."""

    scope = "writes"

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class UploadRateThrottle(OpenWhileCountersDown, ScopedRateThrottle):
    """Image uploads, per user: a view or action opts in with ``throttle_scope="uploads"``."""

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS or getattr(view, "throttle_scope", None) != "uploads":
            return True
        return super().allow_request(request, view)


def upload_wait(request: HttpRequest) -> int | None:
    """For an upload from the pages: None when the user may upload now, else the seconds to
    wait. One counter per user for pages and API, so that neither is a way around the
    other's rate (API_THROTTLE_UPLOADS)."""
    throttle = UploadRateThrottle()
    if throttle.allow_request(request, SimpleNamespace(throttle_scope="uploads")):
        return None
    return max(1, math.ceil(throttle.wait() or 1))
