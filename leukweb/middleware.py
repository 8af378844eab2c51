"""A page whose file store failed answers 503 with the site's own page, not a bare 500."""

import logging
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from leukweb.outages import RETRY_AFTER, outage_of

logger = logging.getLogger(__name__)


class StoreUnavailableMiddleware:
    """Turns an OSError that escaped a page (an object store unreachable or refusing, a
    disk that failed) into "503, try again later". A missing file is a 404, decided where
    it is read; the API answers in its own JSON shape (leukweb.api.errors)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OSError) or isinstance(exception, FileNotFoundError):
            return None
        logger.error("file store failed on %s: %s", request.path, exception)
        # Where the error says what happened (a full or read-only disk), the page says it.
        outage = outage_of(exception)
        context = {"message": outage.message} if outage else {}
        response = render(request, "503.html", context, status=HTTPStatus.SERVICE_UNAVAILABLE)
        response["Retry-After"] = str(RETRY_AFTER)
        return response
