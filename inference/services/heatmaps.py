"""Grad-CAM overlays for reviewers: what the ``inference.make_heatmaps`` task runs.

Gradients need the Keras model (TensorFlow), which the analysis workers never load: once
a case's predictions are stored they queue this task on a queue of its own, and a
heatmap worker makes the overlays. At most one heatmap per prediction, re-delivery
safe: an overlay is attached only to a prediction that has none, in one conditional
UPDATE, and a task that loses that race to another deletes the file it wrote.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from cases.models import SmearImage
from inference.artifacts import heatmap_model_for
from inference.models import ModelVersion, Prediction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeatmapOutcome:
    case_id: int
    model_version: str | None
    made: int = 0
    skipped: int = 0
    note: str = ""


def _missing(case_id: int, version: ModelVersion) -> list[Prediction]:
    return list(
        Prediction.objects.filter(image__case_id=case_id, model_version=version, heatmap="")
        .exclude(image__status=SmearImage.Status.FAILED)
        .select_related("image")
        .order_by("pk")
    )


def case_heatmaps_make(*, case_id: int, model_version_id: int) -> HeatmapOutcome:
    """Make the overlays that a case's predictions by one version still lack.

    A prediction's image that is gone or unreadable is skipped (its prediction stands
    without a heatmap); a model that cannot be loaded is logged and leaves them all
    pending. Storage and database errors propagate, so the task retries them.
    """
    from runtime.artifact import ArtifactError
    from runtime.heatmaps import overlay_png
    from runtime.preprocess import ImageDecodeError, load_for_model, load_rgb

    if not settings.INFERENCE_HEATMAPS:
        return HeatmapOutcome(case_id, None, note="heatmaps are switched off")
    version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is None:
        return HeatmapOutcome(case_id, None, note="no such model version")
    predictions = _missing(case_id, version)
    if not predictions:
        return HeatmapOutcome(case_id, str(version), note="nothing missing")
    try:
        model = heatmap_model_for(version)
    except (ArtifactError, FileNotFoundError) as exc:
        logger.error("heatmaps of case %s: model %s cannot be loaded: %s", case_id, version, exc)
        return HeatmapOutcome(case_id, str(version), note="model unavailable")

    ready, originals = [], []
    for prediction in predictions:
        try:
            with prediction.image.file.open("rb") as fh:
                data = fh.read()
            originals.append(load_rgb(data))
            ready.append((prediction, load_for_model(data, model.input_size)))
        except (FileNotFoundError, ImageDecodeError) as exc:
            logger.warning("no heatmap for prediction %s: %s", prediction.pk, exc)
    if not ready:
        return HeatmapOutcome(case_id, str(version), skipped=len(predictions))
    maps = model.maps([array for _, array in ready], [p.label for p, _ in ready])
    storage = Prediction._meta.get_field("heatmap").storage
    made = 0
    for (prediction, _), original, heat in zip(ready, originals, maps, strict=True):
        name = storage.save(
            f"heatmaps/{prediction.image_id}-{uuid.uuid4().hex}.png",
            ContentFile(overlay_png(original, heat)),
        )
        with transaction.atomic():
            attached = Prediction.objects.filter(pk=prediction.pk, heatmap="").update(heatmap=name)
        if attached:
            made += 1
        else:  # another delivery of this task attached one first
            storage.delete(name)
    return HeatmapOutcome(case_id, str(version), made=made, skipped=len(predictions) - len(ready))
