"""Reviewer and administrator pages: a selector decides access, one service writes."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.models import AuditEvent
from audit.services import audit_record
from cases import selectors as case_selectors
from inference import services as registry
from inference.models import ModelVersion
from reviews import selectors, services
from reviews.forms import EvaluationRequestForm, QueueFilterForm, ReasonForm, VerdictForm
from reviews.report import comparison_row, report_sections
from training.charts import heat_rows

PER_PAGE = 25
# Spreadsheet programs run a cell starting with these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
REGISTRY_ACTIONS = {
    "deploy": ("Deploy", registry.model_version_deploy),
    "shadow": ("Set as shadow", registry.model_version_set_shadow),
    "retire": ("Retire", registry.model_version_retire),
}


# --- the queue ------------------------------------------------------------------------


@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    selectors.require_reviewer(request.user)
    versions = list(selectors.model_version_list())
    form = QueueFilterForm(
        request.GET or None,
        teams=selectors.queue_team_choices(user=request.user),
        subtypes=selectors.subtype_choices(),
        model_versions=versions,
    )
    filters = selectors.QueueFilters()
    if form.is_valid():
        data = form.cleaned_data
        filters = selectors.QueueFilters(
            team_id=data["team"],
            subtype=data["subtype"],
            model_version_id=data["model_version"],
            created_from=data["created_from"],
            created_to=data["created_to"],
        )
    page = Paginator(selectors.review_queue(user=request.user, filters=filters), PER_PAGE)
    page = page.get_page(request.GET.get("page"))
    by_pk = {v.pk: v for v in versions}
    for case in page:
        case.result_model_version = by_pk.get(case.result_model_version_id)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "reviews/queue.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "blinded": selectors.reviewer_blinded(user=request.user),
        },
    )


@require_POST
def reviewer_settings(request: HttpRequest) -> HttpResponse:
    selectors.require_reviewer(request.user)
    blinded = request.POST.get("blinded") == "on"
    services.reviewer_settings_update(user=request.user, blinded=blinded)
    messages.success(request, f"Blinded review {'on' if blinded else 'off'}.")
    return redirect("reviews:queue")


# --- one case -------------------------------------------------------------------------


def _blinded(request: HttpRequest) -> bool:
    """The reviewer's setting, unless this request asks otherwise (?blinded=1 or 0)."""
    asked = request.GET.get("blinded", request.POST.get("blinded"))
    if asked in ("1", "0"):
        return asked == "1"
    return selectors.reviewer_blinded(user=request.user)


def _bars(probabilities: dict, classes: list[str]) -> list[tuple[str, float]]:
    return [(label, float(probabilities.get(label, 0.0))) for label in classes]


def _case_context(request: HttpRequest, case) -> dict:
    """What the review page and the printed report show; the model's answer only if revealed.

    Blinded, nothing that carries the answer is even computed: no labels, probabilities,
    heatmaps, verdicts or history (audit entries name predicted labels).
    """
    sign_off = selectors.sign_off_for_case(case=case)
    blinded = _blinded(request)
    revealed = (
        not blinded
        or sign_off is not None
        or selectors.reviewer_has_diagnosed(user=request.user, case=case)
    )
    images = case_selectors.case_images(case=case)
    context = {
        "case": case,
        "images": images,
        "sign_off": sign_off,
        "locked": sign_off is not None or case.status == case.Status.REVIEWED,
        "blinded": blinded,
        "revealed": revealed,
    }
    if not revealed:
        return context
    results = selectors.case_results(user=request.user, case=case)
    for result in results:
        result.bars = _bars(result.probabilities, result.model_version.classes)
    for image in images:
        if image.prediction is not None:
            image.prediction.bars = _bars(
                image.prediction.probabilities, image.prediction.model_version.classes
            )
    primary = next((r for r in results if r.primary), None)
    context.update(
        results=results,
        primary=primary,
        reviews=list(selectors.review_list_for_case(case=case)),
        history=case.audit_events.select_related("actor")[:100],
    )
    return context


def _verdict_form(request: HttpRequest, case, data=None) -> VerdictForm | None:
    results = selectors.case_results(user=request.user, case=case)
    result = next((r for r in results if r.primary), None)
    if result is None:
        return None
    return VerdictForm(data, choices=services.diagnosis_choices(result))


@require_GET
def case_review(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.review_case_get(user=request.user, pk=pk)
    audit_record(actor=request.user, action=AuditEvent.Action.VIEW, target=case, case=case)
    context = _case_context(request, case)
    context["form"] = None if context["locked"] else _verdict_form(request, case)
    return render(request, "reviews/case_review.html", context)


@require_POST
def case_verdict(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.review_case_get(user=request.user, pk=pk)
    form = _verdict_form(request, case, request.POST)
    if form is not None and form.is_valid():
        # Blinded only if this reviewer has not been shown the answer by an earlier verdict.
        blinded = _blinded(request) and not selectors.reviewer_has_diagnosed(
            user=request.user, case=case
        )
        try:
            services.review_create(
                case=case,
                reviewer=request.user,
                diagnosis=form.cleaned_data["diagnosis"],
                comment=form.cleaned_data["comment"],
                blinded=blinded,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, "Verdict recorded.")
            return redirect("reviews:case_review", pk=case.pk)
    context = _case_context(request, case)
    context["form"] = form
    return render(request, "reviews/case_review.html", context, status=400)


def _add_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@require_POST
def case_sign_off(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.review_case_get(user=request.user, pk=pk)
    try:
        services.case_sign_off(case=case, reviewer=request.user)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        messages.success(request, "Case signed off. It is now locked.")
    return redirect("reviews:case_review", pk=case.pk)


@require_GET
def case_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The printable case report, for everyone who may see the case (the clinician files it)."""
    case = case_selectors.case_get(user=request.user, pk=pk)
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        target=case,
        case=case,
        detail={"page": "printable report"},
    )
    context = _case_context(request, case)
    context["printed"] = timezone.now()
    # Grad-CAM overlays are a reviewer's aid, served to reviewers only.
    context["can_review"] = request.user.is_reviewer or request.user.is_admin
    return render(request, "reviews/case_report.html", context)


@require_GET
def heatmap(request: HttpRequest, pk: int) -> FileResponse:
    prediction = selectors.prediction_get_with_heatmap(user=request.user, pk=pk)
    try:
        handle = prediction.heatmap.storage.open(prediction.heatmap.name)
    except FileNotFoundError as exc:
        raise Http404("The heatmap file is missing.") from exc
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- the audit of predictions ---------------------------------------------------------


@require_GET
def prediction_audit(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")
    predictions = selectors.prediction_audit_list(user=request.user, search=search)
    page = Paginator(predictions, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "reviews/prediction_audit.html", {"page": page, "q": search})


class _Echo:
    """csv.writer wants a file; this one hands each formatted row straight back."""

    def write(self, value: str) -> str:
        return value


def _cell(value) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


CSV_HEADER = (
    "prediction",
    "created",
    "case",
    "patient",
    "team",
    "image",
    "image_name",
    "model_version",
    "model_status",
    "label",
    "confidence",
    "out_of_scope",
    "verdict",
    "diagnosis",
    "signed_off",
)


def _csv_rows(predictions) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for p in predictions.iterator(chunk_size=500):
        case = p.image.case
        row = (
            p.pk,
            p.created.isoformat(),
            case.pk,
            case.patient.identifier,
            case.team.name,
            p.image_id,
            p.image.original_name,
            str(p.model_version),
            p.model_version.status,
            p.label,
            f"{p.confidence:.4f}",
            p.out_of_scope,
            p.review_verdict or "",
            p.review_diagnosis or "",
            p.signed_off,
        )
        yield writer.writerow([_cell(v) for v in row])


@require_GET
def prediction_export(request: HttpRequest) -> StreamingHttpResponse:
    search = request.GET.get("q", "")
    predictions = selectors.prediction_audit_list(user=request.user, search=search)
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.EXPORT,
        target=request.user,
        detail={"what": "predictions", "search": search, "rows": predictions.count()},
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_csv_rows(predictions), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="predictions-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- agreement ------------------------------------------------------------------------


def _agreement_panel(user, version: ModelVersion | None) -> dict | None:
    if version is None:
        return None
    stats = selectors.agreement_for_model_version(user=user, model_version=version)
    return {"version": version, "stats": stats, "rows": heat_rows(stats.matrix, stats.labels)}


@require_GET
def agreement(request: HttpRequest) -> HttpResponse:
    selectors.require_reviewer(request.user)
    versions = list(selectors.model_version_list())
    chosen = request.GET.get("version", "")
    picked = next((v for v in versions if str(v.pk) == chosen), None)
    deployed = next((v for v in versions if v.status == ModelVersion.Status.DEPLOYED), None)
    shadow = next((v for v in versions if v.status == ModelVersion.Status.SHADOW), None)
    shown = [picked] if picked else [deployed, shadow]
    panels = [_agreement_panel(request.user, v) for v in shown if v is not None]
    return render(
        request,
        "reviews/agreement.html",
        {"panels": panels, "versions": versions, "chosen": chosen},
    )


# --- the model registry (administrators) ----------------------------------------------


@require_GET
def registry_list(request: HttpRequest) -> HttpResponse:
    versions = list(selectors.registry_list(user=request.user))
    for version in versions:
        version.test = (version.report.get("evaluation") or {}).get("test") or {}
    events = selectors.deployment_event_list(user=request.user)[:50]
    return render(
        request,
        "reviews/registry_list.html",
        {
            "versions": versions,
            "events": events,
            "previous": registry.model_version_previous(),
        },
    )


@require_GET
def registry_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = selectors.registry_get(user=request.user, pk=pk)
    others = selectors.registry_list(user=request.user)
    comparison = [
        row for row in (comparison_row(v.report, str(v)) for v in others) if row is not None
    ]
    deployed = ModelVersion.objects.deployed()
    shadow = ModelVersion.objects.shadow()
    live = [_agreement_panel(request.user, version)]
    live += [
        _agreement_panel(request.user, v)
        for v in (deployed, shadow)
        if v is not None and v.pk != version.pk
    ]
    evaluations = _local_evaluations(version)
    return render(
        request,
        "reviews/registry_detail.html",
        {
            "version": version,
            "report": report_sections(version.report),
            "comparison": comparison,
            "live": live,
            "events": version.events.select_related("actor").order_by("-created", "-pk"),
            "actions": _actions_for(version),
            "evaluations": evaluations,
            "latest_evaluation": _latest_done(evaluations),
            "evaluation_sets": registry.evaluation_sets(),
            "evaluation_root": settings.EVALUATION_DATA_ROOT,
        },
    )


@require_POST
def registry_evaluate(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue a local evaluation of this version on one of the site's labelled sets."""
    selectors.require_admin(request.user)
    version = selectors.registry_get(user=request.user, pk=pk)
    form = EvaluationRequestForm(request.POST, datasets=registry.evaluation_sets())
    if not form.is_valid():
        messages.error(request, "Choose one of the labelled sets listed.")
    else:
        try:
            registry.model_version_evaluation_request(
                model_version=version,
                dataset=form.cleaned_data["dataset"],
                actor=request.user,
                note=form.cleaned_data["note"],
            )
        except registry.EvaluationRequestError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"Evaluation of {version} on {form.cleaned_data['dataset']} queued: a worker "
                "runs it, and it appears here when done (reload the page).",
            )
    return redirect(f"{reverse('reviews:registry_detail', args=[version.pk])}#local-evaluations")


def _latest_done(evaluations: list):
    return next((e for e in evaluations if e.status == e.Status.DONE), None)


def _local_evaluations(version: ModelVersion) -> list:
    """The version's local evaluations, newest first; the finished ones with their
    warnings, the newest finished one also with its confusion matrix."""
    from training.report import local_evaluation_warnings, reported_test_accuracy

    reported = reported_test_accuracy(version.report)
    evaluations = list(version.evaluations.select_related("actor"))
    done = [e for e in evaluations if e.status == e.Status.DONE]
    for evaluation in done:
        evaluation.warnings = local_evaluation_warnings(evaluation.result, reported)
    if done:
        done[0].confusion = heat_rows(
            done[0].result["metrics"]["confusion_matrix"], list(version.classes)
        )
    return evaluations


def _actions_for(version: ModelVersion) -> list[tuple[str, str]]:
    """The registry changes that the version's status allows (the services re-check)."""
    status = ModelVersion.Status
    allowed = {
        status.REGISTERED: ("deploy", "shadow", "retire"),
        status.SHADOW: ("deploy", "retire"),
    }.get(version.status, ())
    return [(name, REGISTRY_ACTIONS[name][0]) for name in allowed]


def _confirm(
    request: HttpRequest, *, title: str, version, perform, serving: bool = True
) -> HttpResponse:
    """Confirmation page with a required reason; on POST run the registry service.

    A change that puts the version into service shows its latest local evaluation (or
    that it has none) right above the button.
    """
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            perform(reason=form.cleaned_data["reason"])
        except (registry.RegistryError, ValidationError) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{title}: done.")
            return redirect("reviews:registry_list")
    return render(
        request,
        "reviews/registry_confirm.html",
        {
            "form": form,
            "title": title,
            "version": version,
            "serving": serving,
            "evaluation": _latest_done(_local_evaluations(version)) if serving else None,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
def registry_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    version = selectors.registry_get(user=request.user, pk=pk)
    if action not in REGISTRY_ACTIONS:
        raise Http404("No such registry action.")
    title, service = REGISTRY_ACTIONS[action]
    return _confirm(
        request,
        title=f"{title} {version}",
        version=version,
        perform=lambda reason: service(model_version=version, actor=request.user, reason=reason),
        serving=action != "retire",
    )


@require_http_methods(["GET", "POST"])
def registry_rollback(request: HttpRequest) -> HttpResponse:
    selectors.require_admin(request.user)
    previous = registry.model_version_previous()
    if previous is None:
        messages.error(request, "There is no earlier deployed version to roll back to.")
        return redirect("reviews:registry_list")
    return _confirm(
        request,
        title=f"Roll back to {previous}",
        version=previous,
        perform=lambda reason: registry.model_version_rollback(actor=request.user, reason=reason),
    )
