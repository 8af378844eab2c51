import sys
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template import loader
from django.views import defaults
from django.views.decorators.cache import never_cache

from accounts import policies
from authentication.http import second_factor_missing
from leukweb.api.errors import error_body
from leukweb.health import run_checks
from leukweb.outages import RETRY_AFTER, outage_of

# A request that came through a proxy, whatever address it arrived from.
PROXY_HEADERS = (
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Forwarded",
    "X-Real-IP",
)


@login_not_required
@never_cache
def healthz(request):
    """Readiness for load balancers and humans: 200 when every check passes, else 503; what
    was checked only for administrators and this machine (accounts.policies)."""
    results = run_checks()
    healthy = all(result.ok for result in results.values())
    body: dict = {"status": "ok" if healthy else "unavailable"}
    details = policies.health_details_visible(
        request.user,
        address=request.META.get("REMOTE_ADDR", ""),
        proxied=any(header in request.headers for header in PROXY_HEADERS),
        second_factor_passed=not second_factor_missing(request),
    )
    if details:
        body["checks"] = {
            name: {"ok": r.ok, "detail": r.detail, **r.data} for name, r in results.items()
        }
    return JsonResponse(body, status=HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE)


def home(request):
    """The case list is where everyone starts; system status lives at /healthz."""
    return redirect("clinic:case_list")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a 503 saying what happened and that nothing was saved when the cause is an
    outage of the database or the storage; Django's plain 500 page otherwise.

    Django logs the exception with its traceback (as it does for any 5xx). The page is
    rendered without the request, as Django's own 500 is: the database may be down.
    """
    outage = outage_of(sys.exc_info()[1])
    if outage is None:
        return defaults.server_error(request)
    status = HTTPStatus.SERVICE_UNAVAILABLE
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        response = JsonResponse(error_body(status, outage.code, outage.message), status=status)
    elif "application/json" in request.headers.get("Accept", ""):
        # The page uploader's error shape (static/js/uploader.js).
        body = {"errors": {"__all__": [{"message": outage.message, "code": outage.code}]}}
        response = JsonResponse(body, status=status)
    else:
        page = loader.get_template("503.html").render({"message": outage.message})
        response = HttpResponse(page, status=status)
    response["Retry-After"] = str(RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    return response


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form sent without its token (or from another site) gets the
    site's 403 page saying what to do; the API answers in its JSON shape."""
    status = HTTPStatus.FORBIDDEN
    if request.path_info.startswith("/api/"):
        message = (
            "CSRF check failed: send your API token in the Authorization header, "
            "or the CSRF token with a signed-in session."
        )
        return JsonResponse(error_body(status, "csrf_failed", message), status=status)
    page = loader.get_template("403.html").render(
        {
            "exception": "The form had expired or came from another site. "
            "Go back, reload the page and send it again."
        },
        request,
    )
    return HttpResponse(page, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: the site's page (or the uploader's and the API's JSON) saying what was
    wrong, where Django refused the request before any view saw it."""
    status = HTTPStatus.BAD_REQUEST
    if isinstance(exception, TooManyFilesSent):
        code = "too_many_files"
        message = (
            f"At most {settings.UPLOAD_MAX_FILES} images can be uploaded at once, and nothing "
            "was saved. Upload them in smaller groups."
        )
    else:
        code = "bad_request"
        message = (
            "The request could not be understood (a form sent twice, or from a stale page?). "
            "Nothing was changed."
        )
    if request.path_info.startswith("/api/"):
        return JsonResponse(error_body(status, code, message), status=status)
    if "application/json" in request.headers.get("Accept", ""):
        body = {"errors": {"__all__": [{"message": message, "code": code}]}}
        return JsonResponse(body, status=status)
    page = loader.get_template("400.html").render({"message": message}, request)
    return HttpResponse(page, status=status)
