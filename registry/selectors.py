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
