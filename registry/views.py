"""The model registry's pages: list, report, local evaluations, import, and the
confirmed, reasoned changes (deploy, shadow, retire, roll back)."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import policies
from accounts.http import AuthenticatedHttpRequest
from inference import selectors as inference_selectors
from inference.models import ModelVersion
from inference.services import evaluation, registry
from registry import presenters, selectors
from registry.forms import ArtifactImportForm, EvaluationRequestForm, ReasonForm, VariantForm

# The changes that put a version into service; retiring takes it out.
SERVING: dict[str, Callable] = {
    "deploy": registry.model_version_deploy,
    "shadow": registry.model_version_set_shadow,
}


def _wants_json(request: HttpRequest) -> bool:
    """The import page's script asks for JSON so that it can show a refusal in place."""
    return "application/json" in request.headers.get("Accept", "")


@require_GET
def registry_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "registry/list.html", presenters.list_page(user=request.user))


@require_GET
def registry_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    version = selectors.registry_get(user=request.user, pk=pk)
    context = presenters.detail_page(user=request.user, version=version)
    return render(request, "registry/detail.html", context)


@require_GET
def registry_evaluations(request: AuthenticatedHttpRequest, pk: int) -> JsonResponse:
    """Polled by the version's page while one of its local evaluations is queued (not
    audited: it shows nothing new)."""
    version = selectors.registry_get(user=request.user, pk=pk)
    context = presenters.evaluations_panel(user=request.user, version=version)
    html = render_to_string("registry/_evaluations.html", context, request=request)
    return JsonResponse({"active": context["active"], "html": html})


@require_http_methods(["GET", "POST"])
def registry_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Upload a zipped artifact; it is checked exactly as ``manage.py import_model`` does.

    The page's script posts with ``Accept: application/json`` to show upload progress:
    it gets where to go next, or the refusal, instead of a page.
    """
    policies.require_admin(request.user)
    # Bound on every POST, even an empty one, so that a missing file is an error to show.
    posted = request.method == "POST"
    form = ArtifactImportForm(request.POST if posted else None, request.FILES if posted else None)
    if posted and form.is_valid():
        try:
            version = registry.model_version_import_archive(
                archive=form.cleaned_data["archive"], actor=request.user
            )
        except registry.ModelImportError as exc:
            form.add_error("archive", str(exc))
        else:
            messages.success(request, f"Imported {version}. It serves once deployed.")
            if _wants_json(request):
                return JsonResponse({"redirect": reverse("registry:detail", args=[version.pk])})
            return redirect("registry:detail", pk=version.pk)
    if posted and _wants_json(request):
        return JsonResponse({"errors": form.errors.get_json_data()}, status=HTTPStatus.BAD_REQUEST)
    status = HTTPStatus.BAD_REQUEST if posted else HTTPStatus.OK
    return render(request, "registry/import.html", {"form": form}, status=status)


@require_POST
def registry_evaluate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Queue a local evaluation of this version on one of the site's labelled sets."""
    version = selectors.registry_get(user=request.user, pk=pk)
    form = EvaluationRequestForm(request.POST, datasets=inference_selectors.evaluation_sets())
    if not form.is_valid():
        messages.error(request, "Choose one of the labelled sets listed.")
    else:
        try:
            evaluation.model_version_evaluation_request(
                model_version=version,
                dataset=form.cleaned_data["dataset"],
                actor=request.user,
                note=form.cleaned_data["note"],
            )
        except evaluation.EvaluationRequestError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"Evaluation of {version} on {form.cleaned_data['dataset']} queued: a worker "
                "runs it, and it appears here when done.",
            )
    return redirect(f"{reverse('registry:detail', args=[version.pk])}#local-evaluations")


@require_POST
def registry_variant(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Choose which ONNX graph (fp32 or int8) the analysis workers run for this version."""
    version = selectors.registry_get(user=request.user, pk=pk)
    form = VariantForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a variant and give a reason for the change.")
    else:
        try:
            registry.model_version_variant_set(
                model_version=version,
                variant=form.cleaned_data["variant"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except registry.RegistryError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"{version} now serves its {form.cleaned_data['variant']} variant: workers "
                "switch on their next case.",
            )
    return redirect(f"{reverse('registry:detail', args=[version.pk])}#runtime")


def _confirm(
    request: AuthenticatedHttpRequest,
    *,
    title: str,
    version: ModelVersion,
    perform: Callable[[str, bool], object],
    serving: bool = True,
) -> HttpResponse:
    """Confirmation page with a required reason; on POST run the registry service.

    A change that puts the version into service shows its latest local evaluation (or
    that it has none) right above the button, and, when its classes differ from the
    deployed model's, both class sets and a box to tick before it goes on.
    """
    class_change = registry.class_change(version) if serving else None
    form = ReasonForm(request.POST or None, class_change=class_change is not None)
    if request.method == "POST" and form.is_valid():
        try:
            perform(form.cleaned_data["reason"], form.cleaned_data.get("accept_new_classes", False))
        except (registry.RegistryError, ValidationError) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{title}: done.")
            return redirect("registry:list")
    evaluations = presenters.local_evaluations(user=request.user, version=version)
    return render(
        request,
        "registry/confirm.html",
        {
            "form": form,
            "title": title,
            "version": version,
            "serving": serving,
            "class_change": class_change,
            "evaluation": presenters.latest_done(evaluations) if serving else None,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
def registry_action(request: AuthenticatedHttpRequest, pk: int, action: str) -> HttpResponse:
    version = selectors.registry_get(user=request.user, pk=pk)
    if action not in presenters.ACTIONS:
        raise Http404("No such registry action.")
    title, serving = presenters.ACTIONS[action]

    def perform(reason: str, accept_new_classes: bool) -> object:
        if not serving:
            return registry.model_version_retire(
                model_version=version, actor=request.user, reason=reason
            )
        return SERVING[action](
            model_version=version,
            actor=request.user,
            reason=reason,
            accept_new_classes=accept_new_classes,
        )

    return _confirm(
        request, title=f"{title} {version}", version=version, perform=perform, serving=serving
    )


@require_http_methods(["GET", "POST"])
def registry_rollback(request: AuthenticatedHttpRequest) -> HttpResponse:
    policies.require_admin(request.user)
    previous = inference_selectors.model_version_previous()
    if previous is None:
        messages.error(request, "There is no earlier deployed version to roll back to.")
        return redirect("registry:list")
    return _confirm(
        request,
        title=f"Roll back to {previous}",
        version=previous,
        perform=lambda reason, accept_new_classes: registry.model_version_rollback(
            actor=request.user, reason=reason, accept_new_classes=accept_new_classes
        ),
    )
