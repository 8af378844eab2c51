"""Project-wide response rules: nothing with patient data is kept by a browser or a proxy,
and a page whose file store failed answers 503 with the site's own page, not a bare 500."""

import logging
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from leukweb.api.errors import error_body
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


class MethodNotAllowedPageMiddleware:
    """A page opened with a method it does not take (a form's address visited, from the
    history or a bookmark) gets the site's own page saying so; Django's 405 has no body,
    which a browser shows as its own "this page isn't working". The API keeps its JSON
    errors (ApiErrorShapeMiddleware)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code != HTTPStatus.METHOD_NOT_ALLOWED
            or request.path_info.startswith("/api/")
            or response.content
        ):
            return response
        page = render(request, "405.html", status=HTTPStatus.METHOD_NOT_ALLOWED)
        if "Allow" in response:
            page["Allow"] = response["Allow"]
        return page


class NoStoreMiddleware:
    """``Cache-Control: no-store`` (and private, no-cache) on every response to a signed-in
    user and on every API response, errors included: patient data must not stay in a shared
    ward computer's browser cache, its back-button history or a proxy. Static files are
    answered before this (WhiteNoise) and stay cacheable."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # No user when a middleware below answered before authentication ran (a redirect
        # to the URL with a trailing slash).
        user = getattr(request, "user", None)
        if request.path_info.startswith("/api/") or (user is not None and user.is_authenticated):
            add_never_cache_headers(response)
        return response


# What an API error answered by Django rather than DRF says, by status.
API_ERRORS = {
    HTTPStatus.BAD_REQUEST: ("bad_request", "The request is malformed."),
    HTTPStatus.FORBIDDEN: ("permission_denied", "You may not do this."),
    HTTPStatus.NOT_FOUND: ("not_found", "No such endpoint."),
    HTTPStatus.METHOD_NOT_ALLOWED: ("method_not_allowed", "This method is not allowed here."),
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ("too_large", "The request is too large."),
    HTTPStatus.TOO_MANY_REQUESTS: ("throttled", "Too many requests. Please try again later."),
    HTTPStatus.SERVICE_UNAVAILABLE: (
        "unavailable",
        "The service is unavailable; nothing was changed. Please try again later.",
    ),
}
# Headers of the replaced response that still hold for the JSON one.
API_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class ApiErrorShapeMiddleware:
    """Every error under /api/ in the API's one JSON shape (leukweb.api.errors), also those
    that Django answers before or outside DRF: a CSRF refusal, a 405 of a plain view, a
    request too large to parse, a server error. A program calling the API never has to
    parse an HTML page."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not request.path_info.startswith("/api/")
            or response.status_code < HTTPStatus.BAD_REQUEST
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        status = HTTPStatus(response.status_code)
        code, message = API_ERRORS.get(status, ("server_error", "Server error."))
        shaped = JsonResponse(error_body(status, code, message), status=status)
        for header in API_KEPT_HEADERS:
            if header in response:
                shaped[header] = response[header]
        return shaped
