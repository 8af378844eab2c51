"""Translate records to JSON and requests to service arguments; no rules live here."""

from collections.abc import Callable
from typing import cast

from django.urls import reverse
from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import policies
from accounts.models import User
from cases.models import Case, Patient, SmearImage
from inference.models import CaseResult, ModelVersion, Prediction


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    # The serializer's metaclass moves declared fields off the class, so this one does not
    # hide Serializer.fields (the stubs see a class attribute).
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField())
    )


class ErrorSerializer(serializers.Serializer):
    """The shape of every error answer (see leukweb.api.errors)."""

    error = ErrorDetailSerializer()


class PatientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "team", "identifier", "sex", "year_of_birth", "notes", "created"]
        read_only_fields = ["id", "created"]
        # Uniqueness within the team is the service's to check, with its own message.
        validators: list[Callable[..., object]] = []

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            # Only teams the user may add patients to exist, as far as this field knows.
            team = cast(serializers.PrimaryKeyRelatedField, fields["team"])
            team.queryset = policies.creatable_teams(request.user)
        return fields


class PatientUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["sex", "year_of_birth", "notes"]


class CaseResultSerializer(serializers.ModelSerializer):
    model_version: "serializers.StringRelatedField[ModelVersion]" = serializers.StringRelatedField()
    abstained = serializers.BooleanField(
        read_only=True,
        help_text="Every image was out of scope: the model gave no subtype, and label and "
        "probabilities are its raw output, not an answer.",
    )

    class Meta:
        model = CaseResult
        fields = [
            "label",
            "confidence",
            "probabilities",
            "needs_review",
            "images_count",
            "out_of_scope_count",
            "abstained",
            "model_version",
            "created",
        ]


class SignOffSerializer(serializers.Serializer):
    diagnosis = serializers.CharField(source="review.diagnosis")
    verdict = serializers.CharField(
        source="review.verdict", help_text="How the reviewer judged the model's answer."
    )
    model_label = serializers.CharField(source="review.model_label")
    model_abstained = serializers.BooleanField(
        source="review.model_abstained",
        help_text="The model gave no subtype (every image out of scope): model_label is its "
        "top class, not an answer, and the diagnosis is the reviewer's own.",
    )
    comment = serializers.CharField(source="review.comment")
    reviewer = serializers.CharField(source="reviewer.username")
    signed_at = serializers.DateTimeField(source="created")


class CaseSerializer(serializers.ModelSerializer):
    patient_identifier = serializers.CharField(source="patient.identifier", read_only=True)
    submitted_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    withdrawn_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    images_count = serializers.IntegerField(read_only=True, default=0)
    predicted_label = serializers.CharField(
        read_only=True,
        allow_null=True,
        default=None,
        help_text="The case answer's subtype; null without an answer, and where every image "
        "was out of scope (the model gave no subtype).",
    )
    result = serializers.SerializerMethodField()
    sign_off = serializers.SerializerMethodField()
    stalled_reason = serializers.SerializerMethodField(
        help_text=(
            "Why the analysis does not progress, as the case page says it (no queue, no "
            "worker or no model; else that it is overdue); empty while it progresses or is done."
        )
    )
    overdue = serializers.SerializerMethodField(
        help_text="The images have waited longer than expected (ANALYSIS_OVERDUE_AFTER)."
    )
    waiting_since = serializers.SerializerMethodField(
        help_text="When the longest-waiting image was handed to the workers; null if none waits."
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "patient",
            "patient_identifier",
            "team",
            "status",
            "failure_reason",
            "specimen",
            "stain",
            "clinical_notes",
            "submitted_by",
            "created",
            "updated",
            "withdrawn",
            "withdrawn_by",
            "images_count",
            "predicted_label",
            "result",
            "sign_off",
            "stalled_reason",
            "overdue",
            "waiting_since",
        ]

    # The nested serializers are made once per list, not once per case: building a model
    # serializer's fields costs more than writing a row (most of a page of 50 did).
    @cached_property
    def _result_serializer(self) -> CaseResultSerializer:
        return CaseResultSerializer()

    @cached_property
    def _sign_off_serializer(self) -> "SignOffSerializer":
        return SignOffSerializer()

    @extend_schema_field(CaseResultSerializer(allow_null=True))
    def get_result(self, case: Case) -> dict | None:
        result = self.context.get("results", {}).get(case.pk)
        return self._result_serializer.to_representation(result) if result else None

    def _analysis(self, case: Case):
        return self.context.get("analysis", {}).get(case.pk)

    def get_stalled_reason(self, case: Case) -> str:
        state = self._analysis(case)
        return state.stalled_reason if state else ""

    def get_overdue(self, case: Case) -> bool:
        state = self._analysis(case)
        return bool(state and state.overdue)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_waiting_since(self, case: Case) -> str | None:
        state = self._analysis(case)
        if state is None or state.waiting_since is None:
            return None
        return serializers.DateTimeField().to_representation(state.waiting_since)

    @extend_schema_field(SignOffSerializer(allow_null=True))
    def get_sign_off(self, case: Case) -> dict | None:
        sign_off = self.context.get("sign_offs", {}).get(case.pk)
        return self._sign_off_serializer.to_representation(sign_off) if sign_off else None


class CaseCreateSerializer(serializers.Serializer):
    patient = serializers.IntegerField(help_text="Id of a patient of one of your teams.")
    specimen = serializers.ChoiceField(
        choices=Case.Specimen.choices, default=Case.Specimen.PERIPHERAL_BLOOD
    )
    stain = serializers.ChoiceField(choices=Case.Stain.choices, default=Case.Stain.WRIGHT_GIEMSA)
    clinical_notes = serializers.CharField(required=False, allow_blank=True, default="")


class CaseUpdateSerializer(serializers.Serializer):
    specimen = serializers.ChoiceField(choices=Case.Specimen.choices, required=False)
    stain = serializers.ChoiceField(choices=Case.Stain.choices, required=False)
    clinical_notes = serializers.CharField(required=False, allow_blank=True)


class SmearImageSerializer(serializers.ModelSerializer):
    uploaded_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    withdrawn_by: "serializers.SlugRelatedField[User]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = SmearImage
        fields = [
            "id",
            "case",
            "original_name",
            "sha256",
            "width",
            "height",
            "format",
            "size_bytes",
            "status",
            "failure_reason",
            "uploaded_by",
            "uploaded",
            "withdrawn",
            "withdrawn_by",
            "file_url",
            "thumbnail_url",
        ]

    def get_file_url(self, image: SmearImage) -> str:
        return reverse("api:image-file", args=[image.pk])

    def get_thumbnail_url(self, image: SmearImage) -> str:
        return reverse("api:image-thumbnail", args=[image.pk])


class ImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A JPEG, PNG, TIFF or BMP smear image; one per request.")


class PredictionSerializer(serializers.ModelSerializer):
    case = serializers.IntegerField(source="image.case_id", read_only=True)
    model_version: "serializers.StringRelatedField[ModelVersion]" = serializers.StringRelatedField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "image",
            "case",
            "model_version",
            "label",
            "confidence",
            "probabilities",
            "out_of_scope",
            "ood_reason",
            # pending until a heatmap worker attaches its overlay, made, or impossible with
            # the reason (heatmaps off, a model that cannot give them, an unreadable image).
            "heatmap_state",
            "heatmap_reason",
            "created",
        ]
