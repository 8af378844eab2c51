"""One JSON shape for every API error, whatever raised it.

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"file": ["..."]}}}

`fields` maps a request field to its messages and is empty when no field is to blame.
"""

import logging
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler

from cases.services import UploadNotStored
from leukweb.outages import RETRY_AFTER, outage_of

logger = logging.getLogger(__name__)


class StoreUnavailable(exceptions.APIException):
    """The file store failed; the request changed nothing and may be sent again later."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_code = "unavailable"
    default_detail = "The file store could not be reached. Please try again later."


def error_body(status: int, code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"status": status, "code": code, "message": message, "fields": fields or {}}}


def _messages(detail) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item)]
    return [str(detail)]


def api_exception_handler(exc, context) -> Response:
    if isinstance(exc, DjangoValidationError):
        # Services speak Django; the API answers as if a serializer had refused.
        exc = exceptions.ValidationError(serializers.as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, TooManyFilesSent):
        message = f"At most {settings.UPLOAD_MAX_FILES} files in one request."
        exc = exceptions.ParseError(message, code="too_many_files")
    elif isinstance(exc, SuspiciousOperation):
        # What Django's parsers refuse (too many fields, a body too large): the caller's.
        exc = exceptions.ParseError(str(exc) or None)
    elif isinstance(exc, UploadNotStored):
        exc = StoreUnavailable(str(exc), code=exc.code)
    elif isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        # A file store that failed while a file was read: logged, and said plainly.
        logger.error("file store error in the API: %s", exc)
        outage = outage_of(exc)
        exc = StoreUnavailable(outage.message, code=outage.code) if outage else StoreUnavailable()
    response = exception_handler(exc, context)
    outage = outage_of(exc) if response is None else None
    if outage is not None:
        # The database: nothing this request wrote was committed.
        logger.error("%s: %s", outage.code, exc, exc_info=exc)
        status = HTTPStatus.SERVICE_UNAVAILABLE
        body = error_body(status, outage.code, outage.message)
        return Response(body, status=status, headers={"Retry-After": str(RETRY_AFTER)})
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        body = error_body(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "Server error.")
        return Response(body, status=HTTPStatus.INTERNAL_SERVER_ERROR)

    detail = exc.detail
    code = exc.get_codes()
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        if isinstance(detail, dict):
            fields = {
                name: _messages(value)
                for name, value in detail.items()
                if name != "non_field_errors"
            }
    message = " ".join(_messages(detail))
    response.data = error_body(response.status_code, code, message, fields)
    if response.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
        response["Retry-After"] = str(RETRY_AFTER)
    return response


@csrf_exempt
def api_not_found(request: HttpRequest) -> JsonResponse:
    """Unknown paths under /api/ answer in the API's shape, not with an HTML page, whatever
    the method: there is nothing here for a forged request to change."""
    return JsonResponse(
        error_body(HTTPStatus.NOT_FOUND, "not_found", "No such endpoint."),
        status=HTTPStatus.NOT_FOUND,
    )
