"""Reviewer and administrator pages: a selector decides access, one service writes."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts import policies
from accounts.http import AuthenticatedHttpRequest
from accounts.services import user_blinded_review_set
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_read
from cases import selectors as case_selectors
from cases.models import Case
from cases.pagination import paginate
from inference import selectors as answers
from inference.models import ModelVersion, Prediction
from reviews import presenters, selectors, services
from reviews.forms import QueueFilterForm, VerdictForm

PER_PAGE = 25
# Spreadsheet programs run a cell starting with these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# --- the queue ------------------------------------------------------------------------


@require_GET
def queue(request: AuthenticatedHttpRequest) -> HttpResponse:
    policies.require_reviewer(request.user)
    versions = list(answers.model_version_list())
    form = QueueFilterForm(
        request.GET or None,
        teams=selectors.queue_team_choices(user=request.user),
        subtypes=answers.predicted_label_choices(),
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
    queue = selectors.review_queue(user=request.user, filters=filters)
    page = paginate(queue, PER_PAGE, request.GET.get("page"))
    audit_record_read(
        actor=request.user, model=Case, ids=[c.pk for c in page], where=request.get_full_path()
    )
    by_pk = {v.pk: v for v in versions}
    for case in page:
        # result_model_version_id is annotated by the queue's query; the template reads the
        # version as an attribute of the case (mypy knows only the model's fields).
        case.result_model_version = by_pk.get(case.result_model_version_id)  # type: ignore[attr-defined]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "reviews/queue.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "blinded": request.user.blinded_review,
        },
    )


@require_POST
def reviewer_settings(request: AuthenticatedHttpRequest) -> HttpResponse:
    policies.require_reviewer(request.user)
    blinded = request.POST.get("blinded") == "on"
    user_blinded_review_set(user=request.user, blinded=blinded)
    messages.success(request, f"Blinded review {'on' if blinded else 'off'}.")
    return redirect("reviews:queue")


# --- one case -------------------------------------------------------------------------


def _blinded(request: AuthenticatedHttpRequest) -> bool:
    """The reviewer's setting, unless this request asks otherwise (?blinded=1 or 0)."""
    asked = request.GET.get("blinded", request.POST.get("blinded"))
    if asked in ("1", "0"):
        return asked == "1"
    return request.user.blinded_review


def _case_context(request: AuthenticatedHttpRequest, case) -> dict:
    return presenters.case_page(
        user=request.user,
        case=case,
        blinded=_blinded(request),
        access_history=request.GET.get("history") == "all",
    )


def _answer_shown(request: AuthenticatedHttpRequest, case, context: dict) -> None:
    """The page carries the model's answer: this reviewer's verdicts from now on are not
    blind, whatever ``?blinded=`` says."""
    if context.get("revealed") and context.get("results"):
        services.answer_shown_record(
            user=request.user, case_ids=[case.pk], where=request.get_full_path()
        )


def _verdict_form(request: AuthenticatedHttpRequest, case, data=None) -> VerdictForm | None:
    results = selectors.case_results(user=request.user, case=case)
    result = next((r for r in results if r.primary), None)
    if result is None:
        return None
    return VerdictForm(data, choices=services.diagnosis_choices())


@require_GET
def case_review(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    case = selectors.review_case_get(user=request.user, pk=pk)
    audit_record(actor=request.user, action=AuditEvent.Action.VIEW, target=case, case=case)
    context = _case_context(request, case)
    _answer_shown(request, case, context)
    context["form"] = None if context["locked"] else _verdict_form(request, case)
    return render(request, "reviews/case_review.html", context)


@require_POST
def case_verdict(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
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
    _answer_shown(request, case, context)
    context["form"] = form
    return render(request, "reviews/case_review.html", context, status=400)


def _add_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@require_POST
def case_sign_off(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
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
def case_report(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
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
    _answer_shown(request, case, context)
    context["printed"] = timezone.now()
    # Grad-CAM overlays are a reviewer's aid, served to reviewers only.
    context["can_review"] = policies.can_review(request.user)
    return render(request, "reviews/case_report.html", context)


@require_GET
def heatmap(request: AuthenticatedHttpRequest, pk: int) -> FileResponse:
    prediction = selectors.prediction_get_with_heatmap(user=request.user, pk=pk)
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        target=prediction,
        case=prediction.image.case,
        detail={"heatmap": True},
    )
    # The selector keeps only predictions with a heatmap.
    assert prediction.heatmap.name
    try:
        handle = prediction.heatmap.storage.open(prediction.heatmap.name)
    except FileNotFoundError as exc:
        raise Http404("The heatmap file is missing.") from exc
    response = FileResponse(handle, content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- the audit of predictions ---------------------------------------------------------


@require_GET
def prediction_audit(request: AuthenticatedHttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")
    predictions = selectors.prediction_audit_list(user=request.user, search=search)
    page = paginate(predictions, PER_PAGE, request.GET.get("page"))
    audit_record_read(
        actor=request.user,
        model=Prediction,
        ids=[p.pk for p in page],
        where=request.get_full_path(),
    )
    services.answer_shown_record(
        user=request.user,
        case_ids=[p.image.case_id for p in page],
        where=request.get_full_path(),
    )
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
    "ood_reason",
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
            p.ood_reason,
            p.review_verdict or "",
            p.review_diagnosis or "",
            p.signed_off,
        )
        yield writer.writerow([_cell(v) for v in row])


@require_GET
def prediction_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    search = request.GET.get("q", "")
    predictions = selectors.prediction_audit_list(user=request.user, search=search)
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.EXPORT,
        target=request.user,
        detail={"what": "predictions", "search": search, "rows": predictions.count()},
    )
    services.answer_shown_record(
        user=request.user,
        case_ids=predictions.values_list("image__case_id", flat=True).distinct(),
        where=request.get_full_path(),
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_csv_rows(predictions), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="predictions-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- agreement ------------------------------------------------------------------------


@require_GET
def agreement(request: AuthenticatedHttpRequest) -> HttpResponse:
    policies.require_reviewer(request.user)
    versions = list(answers.model_version_list())
    chosen = request.GET.get("version", "")
    picked = next((v for v in versions if str(v.pk) == chosen), None)
    deployed = next((v for v in versions if v.status == ModelVersion.Status.DEPLOYED), None)
    shadow = next((v for v in versions if v.status == ModelVersion.Status.SHADOW), None)
    shown = [picked] if picked else [deployed, shadow]
    panels = [
        presenters.agreement_panel(user=request.user, version=v) for v in shown if v is not None
    ]
    return render(
        request,
        "reviews/agreement.html",
        {"panels": panels, "versions": versions, "chosen": chosen},
    )
