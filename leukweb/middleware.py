"""A page whose file store failed answers 503 with the site's own page, not a bare 500."""

import logging
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

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
        return render(request, "503.html", status=HTTPStatus.SERVICE_UNAVAILABLE)
