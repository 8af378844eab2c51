"""Registry administration: import a zipped artifact, deploy, roll back, shadow, retire.

Each change goes through a confirmation page that asks for a reason; the services record
who, when and why. Model versions are immutable once imported, so every field is read-only.
"""

import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from inference.forms import ArtifactImportForm, RegistryChangeForm, artifact_unpack
from inference.models import (
    CaseResult,
    DeploymentEvent,
    ModelEvaluation,
    ModelVersion,
    Prediction,
)
from inference.services import (
    ModelImportError,
    RegistryError,
    model_version_deploy,
    model_version_import,
    model_version_previous,
    model_version_retire,
    model_version_rollback,
    model_version_set_shadow,
)
from leukweb.admin import ReadOnlyAdmin


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    fields = ["created", "action", "actor", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ModelEvaluationInline(admin.TabularInline):
    """Local evaluations (manage.py evaluate_model); the registry page shows them in full."""

    model = ModelEvaluation
    fields = [
        "created",
        "actor",
        "dataset",
        "note",
        "status",
        "images_count",
        "accuracy",
        "macro_f1",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


# What each registry change does, for the confirmation page and the service to call.
CHANGES = {
    "deploy": (
        "Deploy",
        "Every new analysis will use this version; workers switch on their next task.",
        lambda version, user, reason: model_version_deploy(
            model_version=version, actor=user, reason=reason
        ),
    ),
    "shadow": (
        "Set as shadow",
        "This version will also classify new cases; only reviewers and admins see its answers.",
        lambda version, user, reason: model_version_set_shadow(
            model_version=version, actor=user, reason=reason
        ),
    ),
    "retire": (
        "Retire",
        "This version will never serve again; its predictions are kept.",
        lambda version, user, reason: model_version_retire(
            model_version=version, actor=user, reason=reason
        ),
    ),
}


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

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="inference_modelversion_import"),
            path("rollback/", view(self.rollback_view), name="inference_modelversion_rollback"),
            path(
                "<int:pk>/registry/<str:change>/",
                view(self.change_status_view),
                name="inference_modelversion_change_status",
            ),
            *super().get_urls(),
        ]

    def _require_admin(self, request) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def import_view(self, request):
        self._require_admin(request)
        form = ArtifactImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            with tempfile.TemporaryDirectory(prefix="leukweb-import-") as tmp:
                try:
                    folder = artifact_unpack(form.cleaned_data["archive"], Path(tmp))
                    version = model_version_import(source=folder, actor=request.user)
                except (ModelImportError, forms.ValidationError) as exc:
                    form.add_error("archive", str(exc.message if hasattr(exc, "message") else exc))
                else:
                    messages.success(request, f"Imported {version}. It serves once deployed.")
                    return redirect("admin:inference_modelversion_change", version.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import a model artifact",
            "form": form,
        }
        return TemplateResponse(request, "inference/admin/import.html", context)

    def change_status_view(self, request, pk: int, change: str):
        self._require_admin(request)
        if change not in CHANGES:
            raise PermissionDenied
        version = get_object_or_404(ModelVersion, pk=pk)
        title, effect, apply = CHANGES[change]
        return self._confirm(
            request,
            title=f"{title}: {version}",
            effect=effect,
            version=version,
            apply=lambda reason: apply(version, request.user, reason),
        )

    def rollback_view(self, request):
        self._require_admin(request)
        previous = model_version_previous()
        current = ModelVersion.objects.deployed()
        return self._confirm(
            request,
            title="Roll back",
            effect=(
                f"{previous} will serve again instead of {current}."
                if previous
                else "There is no earlier deployed version to roll back to."
            ),
            version=previous,
            apply=lambda reason: model_version_rollback(actor=request.user, reason=reason),
        )

    def _confirm(self, request, *, title, effect, version, apply):
        form = RegistryChangeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                apply(form.cleaned_data["reason"])
            except RegistryError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"{title}: done.")
                return redirect(reverse("admin:inference_modelversion_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "effect": effect,
            "version": version,
            "form": form,
        }
        return TemplateResponse(request, "inference/admin/confirm.html", context)


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
