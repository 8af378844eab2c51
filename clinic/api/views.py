"""REST endpoints: access through selectors, writes through services, as on the web."""

from collections.abc import Sequence

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.http import FileResponse, Http404
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.http import api_user
from audit.models import AuditEvent
from audit.services import audit_record, audit_record_read
from cases import selectors as case_selectors
from cases import services
from cases.models import Case, Patient, SmearImage
from clinic import presenters, selectors
from clinic.api.serializers import (
    CaseCreateSerializer,
    CaseSerializer,
    CaseUpdateSerializer,
    ErrorSerializer,
    ImageUploadSerializer,
    PatientSerializer,
    PatientUpdateSerializer,
    PredictionSerializer,
    SmearImageSerializer,
)
from clinic.views import image_response
from inference.models import Prediction
from reviews import services as review_services

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request"),
    403: OpenApiResponse(ErrorSerializer, description="Not allowed to change this"),
    404: OpenApiResponse(ErrorSerializer, description="No such record (or not yours)"),
}
READ_ERRORS = {404: ERRORS[404]}
STORE_ERROR = {
    503: OpenApiResponse(
        ErrorSerializer, description="The file store failed: nothing was kept; try again later"
    )
}


# Primary keys are positive 64-bit integers (BigAutoField).
ID_MAX = 2**63 - 1


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "maximum": ID_MAX})
class IdFilter(filters.Filter):
    """A record's id in a query: a whole number within a primary key's range, or 400 before
    anything reaches the database (a decimal of any size once answered 500). Not a choice
    among existing records either, so that an id of another team's record answers exactly
    as one that does not exist: an empty list."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, min_value=1, max_value=ID_MAX, **kwargs)


class AuditedListMixin(mixins.ListModelMixin):
    """A list that audits what it returned: one event per request with the ids of the
    page, since a list shows as much patient data as the records one by one."""

    def list(self, request: Request, *args, **kwargs) -> Response:
        queryset = self.filter_queryset(self.get_queryset())  # type: ignore[attr-defined]
        page = self.paginate_queryset(queryset)  # type: ignore[attr-defined]
        rows = page if page is not None else list(queryset)
        audit_record_read(
            actor=api_user(request),
            model=queryset.model,
            ids=[row.pk for row in rows],
            where=request.get_full_path(),
        )
        self.rows_shown(request, rows)
        data = self.get_serializer(rows, many=True).data  # type: ignore[attr-defined]
        if page is None:
            return Response(data)
        return self.get_paginated_response(data)  # type: ignore[attr-defined]

    def rows_shown(self, request: Request, rows: Sequence[Model]) -> None:
        """What else a list must record about the rows it returned."""


class PatientFilter(filters.FilterSet):
    identifier = filters.CharFilter(lookup_expr="icontains")
    team = IdFilter(help_text="The team's id.")

    class Meta:
        model = Patient
        fields = ["team", "identifier"]


@extend_schema_view(
    list=extend_schema(summary="Patients of your teams"),
    retrieve=extend_schema(
        summary="One patient", responses={200: PatientSerializer, **READ_ERRORS}
    ),
)
class PatientViewSet(AuditedListMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    # Only for the schema's benefit: every request's queryset comes from selectors.
    queryset = Patient.objects.none()
    lookup_value_regex = r"[0-9]+"
    serializer_class = PatientSerializer
    filterset_class = PatientFilter

    def get_queryset(self):
        return case_selectors.patient_list(user=api_user(self.request))

    def get_object(self) -> Patient:
        patient = case_selectors.patient_get(user=api_user(self.request), pk=self.kwargs["pk"])
        audit_record(actor=api_user(self.request), action=AuditEvent.Action.VIEW, target=patient)
        return patient

    @extend_schema(
        summary="Add a patient to one of your teams",
        responses={201: PatientSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        serializer = PatientSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        patient = services.patient_create(user=api_user(request), **serializer.validated_data)
        return Response(PatientSerializer(patient).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a patient's sex, year of birth or notes",
        request=PatientUpdateSerializer,
        responses={200: PatientSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        patient = case_selectors.patient_get_editable(user=api_user(request), pk=pk)
        serializer = PatientUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.patient_update(
            user=api_user(request), patient=patient, **serializer.validated_data
        )
        return Response(PatientSerializer(patient).data)


class CaseFilter(filters.FilterSet):
    """Declares the case list's query parameters; selectors.case_list applies them."""

    status = filters.ChoiceFilter(choices=Case.Status.choices)
    predicted = filters.CharFilter(help_text="Label of the case's predicted subtype.")
    created_after = filters.DateFilter(help_text="Opened on or after this day.")
    created_before = filters.DateFilter(help_text="Opened on or before this day.")
    mine = filters.BooleanFilter(help_text="Only cases you opened.")
    patient = IdFilter(help_text="The patient's id.")
    patient_identifier = filters.CharFilter(help_text="Part of the patient's identifier.")

    class Meta:
        model = Case
        fields: list[str] = []

    def filter_queryset(self, queryset):
        # DjangoFilterBackend hands over the view's (DRF) request.
        assert isinstance(self.request, Request)
        data = self.form.cleaned_data
        return selectors.case_list(
            user=api_user(self.request),
            predicted=data.get("predicted") or "",
            filters=case_selectors.CaseFilters(
                status=data.get("status") or "",
                created_from=data.get("created_after"),
                created_to=data.get("created_before"),
                mine=bool(data.get("mine")),
                search=data.get("patient_identifier") or "",
                patient_id=data.get("patient"),
            ),
        )


def _case_context(user, cases) -> dict:
    """What CaseSerializer shows beside the case: its model result, its sign-off and how
    its analysis stands."""
    return {
        "results": selectors.case_results_for(user=user, cases=cases),
        "sign_offs": selectors.case_sign_offs_for(user=user, cases=cases),
        "analysis": presenters.analysis_states(cases=cases),
    }


@extend_schema_view(
    list=extend_schema(summary="Cases you may see, newest first"),
)
class CaseViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    # Only for the schema's benefit: every request's queryset comes from selectors.
    queryset = Case.objects.none()
    # No rate of its own but that of writes; the upload action names its own.
    throttle_scope = ""
    lookup_value_regex = r"[0-9]+"
    serializer_class = CaseSerializer
    filterset_class = CaseFilter

    def get_queryset(self):
        return selectors.case_list(user=api_user(self.request))

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # Notes, results and sign-offs of every case listed: audited as read, by id.
        audit_record_read(
            actor=api_user(request),
            model=Case,
            ids=[case.pk for case in page or []],
            where=request.get_full_path(),
        )
        context = _case_context(api_user(request), page)
        review_services.answer_shown_record(
            user=api_user(request), case_ids=context["results"], where=request.get_full_path()
        )
        data = CaseSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)

    def _case_response(self, case: Case, *, code: int = status.HTTP_200_OK) -> Response:
        case = selectors.case_get(user=api_user(self.request), pk=case.pk)
        context = _case_context(api_user(self.request), [case])
        review_services.answer_shown_record(
            user=api_user(self.request),
            case_ids=context["results"],
            where=self.request.get_full_path(),
        )
        return Response(CaseSerializer(case, context=context).data, status=code)

    @extend_schema(summary="One case", responses={200: CaseSerializer, **READ_ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        case = selectors.case_get(user=api_user(request), pk=pk)
        audit_record(actor=api_user(request), action=AuditEvent.Action.VIEW, target=case, case=case)
        return self._case_response(case)

    @extend_schema(
        summary="Open a draft case; then upload images and submit it",
        request=CaseCreateSerializer,
        responses={201: CaseSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        serializer = CaseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            patient = case_selectors.patient_get_editable(
                user=api_user(request), pk=data.pop("patient")
            )
        except Http404 as exc:
            raise ValidationError({"patient": "No such patient."}) from exc
        case = services.case_create(user=api_user(request), patient=patient, **data)
        return self._case_response(case, code=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a case's specimen, stain or notes",
        request=CaseUpdateSerializer,
        responses={200: CaseSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        case = case_selectors.case_get_editable(user=api_user(request), pk=pk)
        serializer = CaseUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.case_update(user=api_user(request), case=case, **serializer.validated_data)
        return self._case_response(case)

    @extend_schema(
        summary="Submit a draft case for analysis",
        request=None,
        responses={200: CaseSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str) -> Response:
        case = case_selectors.case_get_editable(user=api_user(request), pk=pk)
        services.case_submit(user=api_user(request), case=case)
        return self._case_response(case)

    @extend_schema(
        summary="Withdraw a draft case opened by mistake",
        description=(
            "Only before submission. The case leaves every list and answers 404 from then "
            "on; nothing is deleted, and the withdrawal is in the audit log."
        ),
        request=None,
        responses={200: CaseSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str) -> Response:
        case = case_selectors.case_get_editable(user=api_user(request), pk=pk)
        services.case_withdraw(user=api_user(request), case=case)
        # Not read back through the selectors: a withdrawn case is no longer among them.
        return Response(CaseSerializer(case, context=_case_context(api_user(request), [])).data)

    @extend_schema(
        methods=["GET"],
        summary="A case's images",
        request=None,
        responses={200: SmearImageSerializer(many=True), **READ_ERRORS},
    )
    @extend_schema(
        methods=["POST"],
        summary="Upload one image to a case (multipart, field `file`)",
        request={"multipart/form-data": ImageUploadSerializer},
        responses={201: SmearImageSerializer, **ERRORS, **STORE_ERROR},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        parser_classes=[MultiPartParser, FormParser],
        pagination_class=None,
        # Uploads have a rate of their own (API_THROTTLE_UPLOADS), besides that of writes.
        throttle_scope="uploads",
    )
    def images(self, request: Request, pk: str) -> Response:
        if request.method == "GET":
            case = selectors.case_get(user=api_user(request), pk=pk)
            images = list(case.images.all())
            audit_record_read(
                actor=api_user(request),
                model=SmearImage,
                ids=[image.pk for image in images],
                where=request.get_full_path(),
            )
            return Response(SmearImageSerializer(images, many=True).data)
        case = case_selectors.case_get_editable(user=api_user(request), pk=pk)
        serializer = ImageUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        try:
            (image,) = services.case_images_add(
                user=api_user(request),
                case=case,
                uploads=[services.Upload(stream=upload, name=upload.name)],
            )
        except ValidationError as exc:
            # The refusal is about the uploaded file: say so in the field.
            raise ValidationError({"file": exc.messages}) from exc
        return Response(SmearImageSerializer(image).data, status=status.HTTP_201_CREATED)


class ImageFilter(filters.FilterSet):
    case = IdFilter(help_text="The case's id.")

    class Meta:
        model = SmearImage
        fields = ["case", "status"]


@extend_schema_view(
    list=extend_schema(summary="Images of the cases you may see"),
    retrieve=extend_schema(
        summary="One image's metadata", responses={200: SmearImageSerializer, **READ_ERRORS}
    ),
)
class ImageViewSet(AuditedListMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    # Only for the schema's benefit: every request's queryset comes from selectors.
    queryset = SmearImage.objects.none()
    lookup_value_regex = r"[0-9]+"
    serializer_class = SmearImageSerializer
    filterset_class = ImageFilter

    def get_queryset(self):
        return case_selectors.image_list(user=api_user(self.request))

    def get_object(self):
        return case_selectors.image_get(user=api_user(self.request), pk=self.kwargs["pk"])

    def retrieve(self, request: Request, pk: str) -> Response:
        image = self.get_object()
        audit_record(
            actor=api_user(request), action=AuditEvent.Action.VIEW, target=image, case=image.case
        )
        return Response(SmearImageSerializer(image).data)

    @extend_schema(
        summary="Download the stored image (metadata removed)",
        responses={(200, "image/*"): OpenApiTypes.BINARY, **READ_ERRORS, **STORE_ERROR},
    )
    @action(detail=True, methods=["get"])
    def file(self, request: Request, pk: str) -> FileResponse:
        image = self.get_object()
        audit_record(
            actor=api_user(request),
            action=AuditEvent.Action.DOWNLOAD,
            target=image,
            case=image.case,
        )
        return image_response(image, image.file, thumbnail=False)

    @extend_schema(
        summary="Withdraw an image uploaded by mistake from its draft case",
        description=(
            "Only before the case is submitted. The image leaves the case's images and is "
            "never analysed; it is kept on record, and the same file may be uploaded again."
        ),
        request=None,
        responses={200: SmearImageSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str) -> Response:
        image = case_selectors.image_get_withdrawable(user=api_user(request), pk=pk)
        services.smear_image_withdraw(user=api_user(request), image=image)
        return Response(SmearImageSerializer(image).data)

    @extend_schema(
        summary="A small JPEG preview",
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY, **READ_ERRORS, **STORE_ERROR},
    )
    @action(detail=True, methods=["get"])
    def thumbnail(self, request: Request, pk: str) -> FileResponse:
        image = self.get_object()
        audit_record(
            actor=api_user(request),
            action=AuditEvent.Action.VIEW,
            target=image,
            case=image.case,
            detail={"thumbnail": True},
        )
        stored = image.thumbnail or image.file
        return image_response(image, stored, thumbnail=bool(image.thumbnail))


class PredictionFilter(filters.FilterSet):
    case = IdFilter(field_name="image__case", help_text="The case's id.")
    image = IdFilter(help_text="The image's id.")
    model_version = IdFilter(help_text="The model version's id.")

    class Meta:
        model = Prediction
        fields = ["case", "image", "label", "model_version"]


@extend_schema_view(
    list=extend_schema(summary="Per-image predictions of the deployed models"),
    retrieve=extend_schema(
        summary="One prediction", responses={200: PredictionSerializer, **READ_ERRORS}
    ),
)
class PredictionViewSet(AuditedListMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    # Only for the schema's benefit: every request's queryset comes from selectors.
    queryset = Prediction.objects.none()
    lookup_value_regex = r"[0-9]+"
    serializer_class = PredictionSerializer
    filterset_class = PredictionFilter

    def get_queryset(self):
        return selectors.prediction_list(user=api_user(self.request))

    def rows_shown(self, request: Request, rows: Sequence[Prediction]) -> None:  # type: ignore[override]
        # Model answers: a reviewer's later verdicts on these cases are not blind.
        review_services.answer_shown_record(
            user=api_user(request),
            case_ids=[p.image.case_id for p in rows],
            where=request.get_full_path(),
        )

    def retrieve(self, request: Request, pk: str) -> Response:
        prediction = self.get_object()
        audit_record(
            actor=api_user(request),
            action=AuditEvent.Action.VIEW,
            target=prediction,
            case=prediction.image.case,
        )
        self.rows_shown(request, [prediction])
        return Response(PredictionSerializer(prediction).data)
