"""Web pages: each view checks access through a selector, calls one service, renders."""

from http import HTTPStatus

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import policies
from accounts.http import AuthenticatedHttpRequest
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_read
from authentication.throttles import upload_wait
from cases import selectors as case_selectors
from cases import services
from cases.models import Case, Patient, SmearImage
from cases.pagination import paginate
from clinic import presenters, selectors
from clinic.forms import CaseCreateForm, CaseEditForm, CaseFilterForm, ImagesForm, PatientForm
from inference import selectors as answers
from inference.services import versions
from reviews import services as review_services

CASES_PER_PAGE = 25
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
# The file store failed: nothing was saved, and the same request may be sent again later.
UNAVAILABLE = HTTPStatus.SERVICE_UNAVAILABLE


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


def _invalid(
    request: HttpRequest, template: str, context: dict, status: int = HTTPStatus.BAD_REQUEST
) -> HttpResponse:
    if _wants_json(request):
        form = context["form"]
        return JsonResponse({"errors": form.errors.get_json_data()}, status=status)
    return render(request, template, context, status=status)


def _rate_error(wait: int) -> ValidationError:
    return ValidationError(
        f"You have uploaded images too often in a short time. Try again in {wait} seconds.",
        code="throttled",
    )


def _throttled(request: HttpRequest, template: str, context: dict, wait: int) -> HttpResponse:
    """429 past the user's upload rate (the API's, on the same counter): the form, with a
    message saying when to try again."""
    context["form"].add_error(None, _rate_error(wait))
    response = _invalid(request, template, context, status=HTTPStatus.TOO_MANY_REQUESTS)
    response["Retry-After"] = str(wait)
    return response


@require_GET
def case_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    labels = answers.predicted_label_choices()
    form = CaseFilterForm(request.GET or None, labels=labels)
    data = form.cleaned_data if form.is_valid() else {}
    filters = case_selectors.CaseFilters(
        status=data.get("status", ""),
        created_from=data.get("created_from"),
        created_to=data.get("created_to"),
        mine=data.get("mine", False),
        search=data.get("q", ""),
    )
    cases = selectors.case_list(
        user=request.user, filters=filters, predicted=data.get("predicted", "")
    )
    page = paginate(cases, CASES_PER_PAGE, request.GET.get("page"))
    audit_record_read(
        actor=request.user, model=Case, ids=[c.pk for c in page], where=request.get_full_path()
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "clinic/case_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "can_create": policies.creatable_teams(request.user).exists(),
        },
    )


@require_http_methods(["GET", "POST"])
def case_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    teams = policies.creatable_teams(request.user)
    if not teams.exists():
        raise PermissionDenied("Only clinicians open cases.")
    patients = case_selectors.patient_list(user=request.user).filter(team__in=teams)
    form = CaseCreateForm(
        request.POST or None,
        request.FILES or None,
        patients=patients,
        teams=teams,
        initial={"patient": request.GET.get("patient")},
    )
    context = {"form": form}
    if request.method == "POST":
        wait = upload_wait(request) if request.FILES else None
        if form.is_valid() and wait is None:
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
            except services.UploadNotStored as exc:
                form.add_error(None, ValidationError(str(exc), code=exc.code))
                return _invalid(request, "clinic/case_new.html", context, status=UNAVAILABLE)
            else:
                messages.success(request, f"Case {case.pk} opened for {case.patient}.")
                return _done(request, reverse("clinic:case_detail", args=[case.pk]))
        if wait is not None:
            return _throttled(request, "clinic/case_new.html", context, wait)
        return _invalid(request, "clinic/case_new.html", context)
    return render(request, "clinic/case_new.html", context)


@require_GET
def case_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        case = selectors.case_get(user=request.user, pk=pk)
    except Http404:
        # A withdrawn case says so at its old address (a bookmark, a link in a message)
        # rather than looking like a mistyped one; outsiders still get 404.
        withdrawn = case_selectors.case_get_withdrawn(user=request.user, pk=pk)
        audit_record(
            actor=request.user, action=AuditEvent.Action.VIEW, target=withdrawn, case=withdrawn
        )
        return render(
            request, "clinic/case_withdrawn.html", {"case": withdrawn}, status=HTTPStatus.GONE
        )
    audit_record(actor=request.user, action=AuditEvent.Action.VIEW, target=case, case=case)
    context = presenters.case_page(
        user=request.user, case=case, access_history=request.GET.get("history") == "all"
    )
    context["images_form"] = ImagesForm()
    if context.get("result"):
        review_services.answer_shown_record(
            user=request.user, case_ids=[case.pk], where=request.get_full_path()
        )
    return render(request, "clinic/case_detail.html", context)


@require_GET
def case_status(request: AuthenticatedHttpRequest, pk: int) -> JsonResponse:
    """Polled by the case page while workers may still change it (not audited: no new data)."""
    case = selectors.case_get(user=request.user, pk=pk)
    context = presenters.analysis_panel(user=request.user, case=case)
    if context.get("result"):
        # The panel now carries the model's answer: a reviewer watching has seen it.
        review_services.answer_shown_record(
            user=request.user, case_ids=[case.pk], where=request.get_full_path()
        )
    return JsonResponse(
        {
            "status": case.status,
            "status_display": case.get_status_display(),
            "active": context["active"],
            "html": render_to_string("clinic/_analysis.html", context, request=request),
        }
    )


@require_http_methods(["GET", "POST"])
def case_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    case = case_selectors.case_get_editable(user=request.user, pk=pk)
    if case.status == Case.Status.REVIEWED:
        # Before the form is shown, not only when it is saved: a locked case offers no edit.
        raise PermissionDenied(services.CASE_LOCKED)
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
            return redirect("clinic:case_detail", pk=case.pk)
    return render(request, "clinic/case_edit.html", {"form": form, "case": case})


@require_POST
def case_images_add(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    case = case_selectors.case_get_editable(user=request.user, pk=pk)
    form = ImagesForm(request.POST, request.FILES)
    status = HTTPStatus.BAD_REQUEST
    wait = upload_wait(request) if request.FILES else None
    if wait is not None:
        form.is_valid()
        form.add_error(None, _rate_error(wait))
        status = HTTPStatus.TOO_MANY_REQUESTS
    elif form.is_valid():
        try:
            images = services.case_images_add(
                user=request.user, case=case, uploads=_uploads(form.cleaned_data["images"])
            )
        except ValidationError as exc:
            _form_errors(form, exc)
        except services.UploadNotStored as exc:
            form.add_error(None, ValidationError(str(exc), code=exc.code))
            status = UNAVAILABLE
        else:
            messages.success(request, f"{len(images)} image(s) added.")
            return _done(request, reverse("clinic:case_detail", args=[case.pk]))
    if _wants_json(request):
        response = JsonResponse({"errors": form.errors.get_json_data()}, status=status)
        if wait is not None:
            response["Retry-After"] = str(wait)
        return response
    for error in form.errors.get("images", []) + form.non_field_errors():
        # An ErrorList yields messages (its __getitem__ unwraps each ValidationError); the
        # stubs type its items as ValidationError | str.
        messages.error(request, error)  # type: ignore[arg-type]
    return redirect("clinic:case_detail", pk=case.pk)


@require_POST
def case_submit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    case = case_selectors.case_get_editable(user=request.user, pk=pk)
    try:
        services.case_submit(user=request.user, case=case)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Case submitted for analysis.")
    return redirect("clinic:case_detail", pk=case.pk)


@require_POST
def case_withdraw(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    case = case_selectors.case_get_editable(user=request.user, pk=pk)
    try:
        services.case_withdraw(user=request.user, case=case)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("clinic:case_detail", pk=case.pk)
    messages.success(request, f"Case {case.pk} withdrawn. It stays on record in the audit log.")
    return redirect("clinic:case_list")


@require_POST
def case_reanalyse(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """An administrator's explicit request to analyse a case with another model version."""
    case = selectors.case_get(user=request.user, pk=pk)
    policies.require_admin(request.user)
    chosen = request.POST.get("model_version", "")
    version = (
        # isdigit() alone takes "²", which int() refuses.
        answers.model_version_list().filter(pk=int(chosen)).first()
        if chosen.isascii() and chosen.isdigit()
        else None
    )
    if version is None:
        messages.error(request, "Choose a model version.")
        return redirect("clinic:case_detail", pk=case.pk)
    try:
        versions.case_reanalysis_request(
            case=case,
            model_version=version,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Case {case.pk} queued for analysis with {version}.")
    return redirect("clinic:case_detail", pk=case.pk)


@require_POST
def image_withdraw(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    image = case_selectors.image_get_withdrawable(user=request.user, pk=pk)
    try:
        services.smear_image_withdraw(user=request.user, image=image)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{image} withdrawn from the case.")
    return redirect("clinic:case_detail", pk=image.case_id)


def image_response(image: SmearImage, file: FieldFile, *, thumbnail: bool) -> FileResponse:
    # A row is saved only once its files are stored (cases.services), so they have names.
    assert file.name
    content_type = "image/jpeg" if thumbnail else IMAGE_TYPES.get(image.format, "image/png")
    try:
        handle = default_storage.open(file.name)
    except FileNotFoundError as exc:
        # The row is kept whatever happened to its file; a store that is down is a 503
        # (leukweb.middleware), a file that is gone is not found.
        raise Http404("The image file is missing from the store.") from exc
    response = FileResponse(handle, content_type=content_type)
    response["Content-Disposition"] = (
        "inline" if thumbnail else f'inline; filename="smear-{image.pk}.{image.format.lower()}"'
    )
    # No Cache-Control here: leukweb.middleware.NoStoreMiddleware says no-store, as for every
    # response with patient data (a ward computer's browser keeps no copy).
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def image_file(request: AuthenticatedHttpRequest, pk: int) -> FileResponse:
    image = case_selectors.image_get(user=request.user, pk=pk)
    audit_record(
        actor=request.user, action=AuditEvent.Action.DOWNLOAD, target=image, case=image.case
    )
    return image_response(image, image.file, thumbnail=False)


@require_GET
def image_thumbnail(request: AuthenticatedHttpRequest, pk: int) -> FileResponse:
    image = case_selectors.image_get(user=request.user, pk=pk)
    audit_record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        target=image,
        case=image.case,
        detail={"thumbnail": True},
    )
    if not image.thumbnail:
        return image_response(image, image.file, thumbnail=False)
    return image_response(image, image.thumbnail, thumbnail=True)


@require_GET
def patient_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")
    patients = case_selectors.patient_list(user=request.user, search=search)
    page = paginate(patients, CASES_PER_PAGE, request.GET.get("page"))
    audit_record_read(
        actor=request.user, model=Patient, ids=[p.pk for p in page], where=request.get_full_path()
    )
    return render(
        request,
        "clinic/patient_list.html",
        {
            "page": page,
            "q": search,
            "can_create": policies.creatable_teams(request.user).exists(),
        },
    )


@require_http_methods(["GET", "POST"])
def patient_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    teams = policies.creatable_teams(request.user)
    if not teams.exists():
        raise PermissionDenied("Only clinicians add patients.")
    form = PatientForm(request.POST or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.patient_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            return redirect("clinic:patient_detail", pk=patient.pk)
    return render(request, "clinic/patient_form.html", {"form": form})


@require_GET
def patient_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    patient = case_selectors.patient_get(user=request.user, pk=pk)
    audit_record(actor=request.user, action=AuditEvent.Action.VIEW, target=patient)
    cases = selectors.case_list(
        user=request.user, filters=case_selectors.CaseFilters(patient_id=patient.pk)
    )
    return render(
        request,
        "clinic/patient_detail.html",
        {
            "patient": patient,
            "cases": cases,
            "can_edit": policies.can_edit(request.user, patient.team_id),
        },
    )


@require_http_methods(["GET", "POST"])
def patient_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    patient = case_selectors.patient_get_editable(user=request.user, pk=pk)
    form = PatientForm(request.POST or None, instance=patient, teams=None)
    if request.method == "POST" and form.is_valid():
        services.patient_update(
            user=request.user,
            patient=case_selectors.patient_get(user=request.user, pk=pk),
            **form.cleaned_data,
        )
        messages.success(request, "Patient updated.")
        return redirect("clinic:patient_detail", pk=patient.pk)
    return render(request, "clinic/patient_form.html", {"form": form, "patient": patient})
