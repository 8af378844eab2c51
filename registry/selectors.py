"""Reads for the registry's pages: administrators only (403 for anyone else)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts import policies
from accounts.models import User
from inference import selectors as inference_selectors
from inference.models import DeploymentEvent, ModelEvaluation, ModelVersion


def registry_list(*, user: User) -> QuerySet[ModelVersion]:
    policies.require_admin(user)
    return inference_selectors.model_version_list()


def registry_get(*, user: User, pk: int) -> ModelVersion:
    policies.require_admin(user)
    return get_object_or_404(inference_selectors.model_version_list(), pk=pk)


def deployment_event_list(*, user: User) -> QuerySet[DeploymentEvent]:
    policies.require_admin(user)
    return inference_selectors.deployment_event_list()


def evaluation_list(*, user: User, model_version: ModelVersion) -> list[ModelEvaluation]:
    """The version's local evaluations, newest first."""
    policies.require_admin(user)
    return list(model_version.evaluations.select_related("actor"))


def calibration_parent(*, user: User, version: ModelVersion) -> ModelVersion | None:
    """The registered version that ``version`` was site-calibrated from, if any."""
    policies.require_admin(user)
    origin = ((version.manifest.get("extra") or {}).get("site_calibration") or {}).get(
        "calibrated_from"
    ) or {}
    if not origin.get("content_hash"):
        return None
    return (
        inference_selectors.model_version_list()
        .filter(content_hash=origin["content_hash"])
        .exclude(pk=version.pk)
        .first()
    )


def calibration_children(*, user: User, version: ModelVersion) -> list[ModelVersion]:
    """The registered versions site-calibrated from ``version``, newest first."""
    policies.require_admin(user)
    return list(
        inference_selectors.model_version_list().filter(
            manifest__extra__site_calibration__calibrated_from__content_hash=version.content_hash
        )
    )
