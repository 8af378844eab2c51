"""Read-only lists of the registry's records; every change happens on the registry's
pages (/registry/), which these link to. Model versions are immutable once imported."""

from django.contrib import admin

from audit.admin import FieldHistoryAdmin, ReadOnlyAdmin
from inference.models import (
    CaseResult,
    DeploymentEvent,
    ModelEvaluation,
    ModelVersion,
    Prediction,
)


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    # Tuples, so that `fields` can share them: a list of names is no list of the wider
    # entries `fields` is typed with (lists are invariant), a tuple is.
    readonly_fields = ("created", "action", "actor", "reason")
    fields = readonly_fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ModelEvaluationInline(admin.TabularInline):
    """Local evaluations (manage.py evaluate_model); the registry page shows them in full."""

    model = ModelEvaluation
    readonly_fields = (
        "created",
        "actor",
        "dataset",
        "note",
        "status",
        "images_count",
        "accuracy",
        "macro_f1",
    )
    fields = readonly_fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "architecture", "status", "synthetic", "created"]
    list_filter = ["status", "architecture"]
    readonly_fields = [
        "name",
        "version",
        "architecture",
        "classes",
        "input_size",
        "status",
        "synthetic",
        "artifact",
        "content_hash",
        "manifest",
        "report",
        "imported_by",
        "created",
    ]
    inlines = [DeploymentEventInline, ModelEvaluationInline]
    change_list_template = "inference/admin/modelversion_change_list.html"
    change_form_template = "inference/admin/modelversion_change_form.html"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and getattr(request.user, "is_admin", False)

    @admin.display(boolean=True, description="Synthetic demo")
    def synthetic(self, obj: ModelVersion) -> bool:
        return obj.is_synthetic


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(ReadOnlyAdmin):
    list_display = ["created", "action", "model_version", "actor", "reason"]
    list_filter = ["action"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["image", "model_version", "label", "confidence", "inference_ms", "created"]
    list_filter = ["model_version", "label"]
    list_select_related = ["image", "model_version"]


@admin.register(CaseResult)
class CaseResultAdmin(ReadOnlyAdmin):
    list_display = ["case", "model_version", "label", "confidence", "needs_review", "primary"]
    list_filter = ["model_version", "needs_review", "primary"]
    list_select_related = ["case", "model_version"]


# Which result was the case's answer when: its field history, read-only.
admin.site.register(CaseResult.history.model, FieldHistoryAdmin)
