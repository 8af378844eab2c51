from http import HTTPStatus

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache

from leukweb.health import run_checks


@login_not_required
@never_cache
def healthz(request):
    """Readiness for load balancers and humans: 200 when every check passes, else 503."""
    results = run_checks()
    healthy = all(result.ok for result in results.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()},
    }
    return JsonResponse(body, status=HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE)


def home(request):
    """The case list is where everyone starts; system status lives at /healthz."""
    return redirect("clinic:case_list")
