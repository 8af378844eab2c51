"""Web pages: each view checks access through a selector, calls one service, renders."""

from http import HTTPStatus

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.models import AuditEvent
from audit.services import audit_record
from cases import selectors, services
from cases.forms import CaseCreateForm, CaseEditForm, CaseFilterForm, ImagesForm, PatientForm
from cases.models import Case, SmearImage

CASES_PER_PAGE = 25
# Statuses in which a worker may still change the case: the page keeps polling.
ACTIVE_STATUSES = (Case.Status.SUBMITTED, Case.Status.ANALYSING)
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def _wants_json(request: HttpRequest) -> bool:
    """The uploader script asks for JSON so that it can show errors without a reload."""
    return "application/json" in request.headers.get("Accept", "")


def _uploads(files) -> list[services.Upload]:
    return [services.Upload(stream=f, name=f.name) for f in files]


def _form_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _done(request: HttpRequest, url: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"redirect": url})
    return redirect(url)


def _invalid(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    if _wants_json(request):
        form = context["form"]
        return JsonResponse({"errors": form.errors.get_json_data()}, status=HTTPStatus.BAD_REQUEST)
    return render(request, template, context, status=HTTPStatus.BAD_REQUEST)


@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    labels = selectors.predicted_label_choices()
    form = CaseFilterForm(request.GET or None, labels=labels)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.CaseFilters(
        status=data.get("status", ""),
        predicted=data.get("predicted", ""),
        created_from=data.get("created_from"),
        created_to=data.get("created_to"),
        mine=data.get("mine", False),
        search=data.get("q", ""),
    )
    cases = selectors.case_list(user=request.user, filters=filters)
    page = Paginator(cases, CASES_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "cases/case_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "can_create": selectors.team_list_for_create(user=request.user).exists(),
        },
    )


@require_http_methods(["GET", "POST"])
def case_new(request: HttpRequest) -> HttpResponse:
    teams = selectors.team_list_for_create(user=request.user)
    if not teams.exists():
        raise PermissionDenied("Only clinicians open cases.")
    patients = selectors.patient_list(user=request.user).filter(team__in=teams)
    form = CaseCreateForm(
        request.POST or None,
        request.FILES or None,
        patients=patients,
        teams=teams,
        initial={"patient": request.GET.get("patient")},
    )
    context = {"form": form}
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                case = services.case_create(
                    user=request.user,
                    patient=data["patient"],
                    new_patient=form.new_patient(),
                    specimen=data["specimen"],
                    stain=data["stain"],
                    clinical_notes=data["clinical_notes"],
                    uploads=_uploads(data["images"]),
                    submit=data["submit"],
                )
            except ValidationError as exc:
                _form_errors(form, exc)
            else:
                messages.success(request, f"Case {case.pk} opened for {case.patient}.")
                return _done(request, reverse("cases:case_detail", args=[case.pk]))
        return _invalid(request, "cases/case_new.html", context)
    return render(request, "cases/case_new.html", context)


def _analysis_stalled() -> str:
    """Why a queued analysis cannot go on right now, for the clinician; "" when it can.

    Nothing is lost meanwhile: the images are stored as pending and the periodic sweep
    queues them again once the missing part is back.
    """
    from leukweb.health import check_broker, check_model, check_worker

    if not check_broker().ok:
        return (
            "The analysis queue is unreachable: the images are saved and will be analysed "
            "within minutes of it coming back."
        )
    if not check_worker().ok:
        return (
            "No analysis worker is running: the images are saved and will be analysed as "
            "soon as one starts."
        )
    if not check_model().ok:
        return (
            "No model is deployed: the images are saved and will be analysed within minutes "
            "of an administrator deploying one."
        )
    return ""


def _analysis_context(request: HttpRequest, case: Case) -> dict:
    from reviews.selectors import model_answer_hidden  # reviews builds on cases

    active = case.status in ACTIVE_STATUSES
    context = {
        "case": case,
        "active": active,
        "stalled": _analysis_stalled() if active else "",
    }
    if model_answer_hidden(user=request.user, case=case):
        return {**context, "images": list(case.images.all()), "result": None, "blinded": True}
    return {
        **context,
        "images": selectors.case_images(case=case),
        "result": selectors.case_result(case=case),
    }


@require_GET
def case_detail(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.case_get(user=request.user, pk=pk)
    audit_record(actor=request.user, action=AuditEvent.Action.VIEW, target=case, case=case)
    context = _analysis_context(request, case)
    context.update(
        can_edit=selectors.user_can_edit(request.user, case.team_id),
        can_review=request.user.is_reviewer or request.user.is_admin,
        sign_off=selectors.case_sign_offs_for(user=request.user, cases=[case]).get(case.pk),
        images_form=ImagesForm(),
        # The history names predicted labels, so a blinded reviewer does not get it either.
        history=[] if context.get("blinded") else case.audit_events.select_related("actor")[:50],
    )
    return render(request, "cases/case_detail.html", context)


@require_GET
def case_status(request: HttpRequest, pk: int) -> JsonResponse:
    """Polled by the case page while workers may still change it (not audited: no new data)."""
    case = selectors.case_get(user=request.user, pk=pk)
    context = _analysis_context(request, case)
    return JsonResponse(
        {
            "status": case.status,
            "status_display": case.get_status_display(),
            "active": context["active"],
            "html": render_to_string("cases/_analysis.html", context, request=request),
        }
    )


@require_http_methods(["GET", "POST"])
def case_edit(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.case_get_editable(user=request.user, pk=pk)
    form = CaseEditForm(request.POST or None, instance=case)
    if request.method == "POST" and form.is_valid():
        try:
            services.case_update(
                user=request.user, case=Case.objects.get(pk=case.pk), **form.cleaned_data
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Case updated.")
            return redirect("cases:case_detail", pk=case.pk)
    return render(request, "cases/case_edit.html", {"form": form, "case": case})


@require_POST
def case_images_add(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.case_get_editable(user=request.user, pk=pk)
    form = ImagesForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            images = services.case_images_add(
                user=request.user, case=case, uploads=_uploads(form.cleaned_data["images"])
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, f"{len(images)} image(s) added.")
            return _done(request, reverse("cases:case_detail", args=[case.pk]))
    if _wants_json(request):
        return JsonResponse({"errors": form.errors.get_json_data()}, status=HTTPStatus.BAD_REQUEST)
    for error in form.errors.get("images", []) + form.non_field_errors():
        messages.error(request, error)
    return redirect("cases:case_detail", pk=case.pk)


@require_POST
def case_submit(request: HttpRequest, pk: int) -> HttpResponse:
    case = selectors.case_get_editable(user=request.user, pk=pk)
    try:
        services.case_submit(user=request.user, case=case)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Case submitted for analysis.")
    return redirect("cases:case_detail", pk=case.pk)


def image_response(image: SmearImage, name: str, *, thumbnail: bool) -> FileResponse:
    content_type = "image/jpeg" if thumbnail else IMAGE_TYPES.get(image.format, "image/png")
    response = FileResponse(default_storage.open(name), content_type=content_type)
    response["Content-Disposition"] = (
        "inline" if thumbnail else f'inline; filename="smear-{image.pk}.{image.format.lower()}"'
    )
    # Clinical images: kept by the browser only, never by a shared cache.
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    image = selectors.image_get(user=request.user, pk=pk)
    audit_record(
        actor=request.user, action=AuditEvent.Action.DOWNLOAD, target=image, case=image.case
    )
    return image_response(image, image.file.name, thumbnail=False)


@require_GET
def image_thumbnail(request: HttpRequest, pk: int) -> FileResponse:
    image = selectors.image_get(user=request.user, pk=pk)
    if not image.thumbnail:
        return image_response(image, image.file.name, thumbnail=False)
    return image_response(image, image.thumbnail.name, thumbnail=True)


@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")
    patients = selectors.patient_list(user=request.user, search=search)
    page = Paginator(patients, CASES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "cases/patient_list.html",
        {
            "page": page,
            "q": search,
            "can_create": selectors.team_list_for_create(user=request.user).exists(),
        },
    )


@require_http_methods(["GET", "POST"])
def patient_new(request: HttpRequest) -> HttpResponse:
    teams = selectors.team_list_for_create(user=request.user)
    if not teams.exists():
        raise PermissionDenied("Only clinicians add patients.")
    form = PatientForm(request.POST or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.patient_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            return redirect("cases:patient_detail", pk=patient.pk)
    return render(request, "cases/patient_form.html", {"form": form})


@require_GET
def patient_detail(request: HttpRequest, pk: int) -> HttpResponse:
    patient = selectors.patient_get(user=request.user, pk=pk)
    audit_record(actor=request.user, action=AuditEvent.Action.VIEW, target=patient)
    cases = selectors.case_list(
        user=request.user, filters=selectors.CaseFilters(patient_id=patient.pk)
    )
    return render(
        request,
        "cases/patient_detail.html",
        {
            "patient": patient,
            "cases": cases,
            "can_edit": selectors.user_can_edit(request.user, patient.team_id),
        },
    )


@require_http_methods(["GET", "POST"])
def patient_edit(request: HttpRequest, pk: int) -> HttpResponse:
    patient = selectors.patient_get_editable(user=request.user, pk=pk)
    form = PatientForm(request.POST or None, instance=patient, teams=None)
    if request.method == "POST" and form.is_valid():
        services.patient_update(
            user=request.user,
            patient=selectors.patient_get(user=request.user, pk=pk),
            **form.cleaned_data,
        )
        messages.success(request, "Patient updated.")
        return redirect("cases:patient_detail", pk=patient.pk)
    return render(request, "cases/patient_form.html", {"form": form, "patient": patient})
