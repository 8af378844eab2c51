"""Grad-CAM overlays for reviewers: what the ``inference.make_heatmaps`` task runs.

Gradients need the Keras model (TensorFlow), which the analysis workers never load: once
a case's predictions are stored they queue this task on a queue of its own, and a
heatmap worker makes the overlays.

A prediction's heatmap is pending until one is attached (made), or impossible with a
reason a reviewer is shown (heatmaps switched off, a model that cannot give them, an
image that cannot be read). Nothing is lost on the way:

- A run claims a few pending predictions (INFERENCE_HEATMAP_BATCH) with a lease it
  renews while it works, and queues the case's next few before it starts: each message is
  short, so a worker told to stop finishes its task within the grace period, and several
  heatmap workers share a big case. A killed run's claims lapse and the sweep queues them
  again (``heatmaps_requeue``), as it does pending heatmaps whose message was lost.
- A file is written under a new unique name that the row records first (its draft), and
  attached with a conditional UPDATE that requires the claim: a run that loses the race,
  or whose database fails, deletes its file, and the file of a run that died between its
  write and its attach is deleted by name when its claim is taken over.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from cases.files import file_save, files_delete
from inference import dispatch
from inference.artifacts import heatmap_model_for
from inference.models import HeatmapState, ModelVersion, Prediction
from inference.services.claims import claim_open, lease_end, lease_kept

logger = logging.getLogger(__name__)

CLAIM = "heatmap_"  # the prefix of a prediction's heatmap claim fields

HEATMAPS_OFF = "heatmaps are switched off on this installation"
SHADOW_MODEL = "a shadow model's predictions get none (reviewers see the case's model)"
MODEL_CANNOT = "the model cannot give heatmaps ({detail})"
IMAGE_MISSING = "the stored image file is missing"
IMAGE_UNREADABLE = "the image could not be read ({detail})"


@dataclass(frozen=True)
class HeatmapOutcome:
    case_id: int
    model_version: str | None
    made: int = 0
    impossible: int = 0
    note: str = ""


def _storage():
    return Prediction._meta.get_field("heatmap").storage


def _pending(case_id: int, version: ModelVersion) -> QuerySet[Prediction]:
    return Prediction.objects.filter(
        image__case_id=case_id, model_version=version, heatmap_state=HeatmapState.PENDING
    )


def predictions_heatmap_refuse(predictions: QuerySet[Prediction], reason: str) -> int:
    """Mark these pending heatmaps impossible, with the reason a reviewer is shown."""
    return predictions.filter(heatmap_state=HeatmapState.PENDING).update(
        heatmap_state=HeatmapState.IMPOSSIBLE,
        heatmap_reason=reason,
        heatmap_changed=timezone.now(),
        heatmap_claimed_by="",
        heatmap_lease_expires=None,
    )


def heatmaps_claim(*, case_id: int, version: ModelVersion, holder: str) -> list[Prediction]:
    """Claim up to INFERENCE_HEATMAP_BATCH of the case's pending heatmaps by ``version``
    that nobody live holds; a dead run's draft file among them is deleted first."""
    with transaction.atomic():
        # SKIP LOCKED: two runs claiming at once take different predictions.
        claimed = list(
            _pending(case_id, version)
            .filter(claim_open(holder, prefix=CLAIM))
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("image")
            .order_by("pk")[: settings.INFERENCE_HEATMAP_BATCH]
        )
        Prediction.objects.filter(pk__in=[p.pk for p in claimed]).update(
            heatmap_claimed_by=holder, heatmap_lease_expires=lease_end()
        )
    _drafts_delete([p for p in claimed if p.heatmap_draft])
    return claimed


def _drafts_delete(predictions: Iterable[Prediction]) -> None:
    """Delete the files that runs which lost their claim wrote and never attached."""
    for prediction in predictions:
        if not files_delete(_storage(), [prediction.heatmap_draft]):
            Prediction.objects.filter(
                pk=prediction.pk, heatmap_draft=prediction.heatmap_draft
            ).update(heatmap_draft="")


def _release(pks: list[int], holder: str) -> None:
    """Hand back what this run still holds after it failed: due for the sweep at once.
    Best effort: when the database is what failed, the claims lapse instead."""
    try:
        Prediction.objects.filter(pk__in=pks, heatmap_claimed_by=holder).update(
            heatmap_claimed_by="", heatmap_lease_expires=None
        )
    except Exception:
        logger.warning("could not hand back the heatmap claims of %s", holder, exc_info=True)


def case_heatmaps_make(*, case_id: int, model_version_id: int, holder: str) -> HeatmapOutcome:
    """Make the next few overlays that a case's predictions by one version still lack.

    An image that is gone or unreadable, or a model that cannot give gradients, makes
    those heatmaps impossible (with the reason). Storage and database errors propagate,
    so the task retries them; the claims lapse or are handed back meanwhile.
    """
    from runtime.artifact import ArtifactError

    version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is None:
        return HeatmapOutcome(case_id, None, note="no such model version")
    pending = _pending(case_id, version)
    if not settings.INFERENCE_HEATMAPS:
        refused = predictions_heatmap_refuse(pending, HEATMAPS_OFF)
        return HeatmapOutcome(case_id, str(version), impossible=refused, note=HEATMAPS_OFF)
    if not pending.exists():
        return HeatmapOutcome(case_id, str(version), note="nothing missing")
    # Loaded before anything is claimed: no lease runs out while TensorFlow loads.
    try:
        model = heatmap_model_for(version)
    except (ArtifactError, FileNotFoundError) as exc:
        logger.error("heatmaps of case %s: model %s cannot give them: %s", case_id, version, exc)
        refused = predictions_heatmap_refuse(pending, MODEL_CANNOT.format(detail=exc))
        return HeatmapOutcome(case_id, str(version), impossible=refused, note="model unavailable")

    claimed = heatmaps_claim(case_id=case_id, version=version, holder=holder)
    if not claimed:
        return HeatmapOutcome(case_id, str(version), note="the rest is held by other runs")
    if pending.filter(claim_open(prefix=CLAIM)).exists():
        # The rest of the case in another short message, which another worker may take now.
        dispatch.case_heatmaps_request(case_id, version.pk)
    pks = [p.pk for p in claimed]
    try:
        with lease_kept(Prediction, pks, holder, prefix=CLAIM):
            made, impossible = _overlays_make(model, claimed, holder)
    except BaseException:
        _release(pks, holder)
        raise
    return HeatmapOutcome(case_id, str(version), made=made, impossible=impossible)


def _overlays_make(model, claimed: list[Prediction], holder: str) -> tuple[int, int]:
    from runtime.heatmaps import overlay_png
    from runtime.preprocess import ImageDecodeError, load_for_model, load_rgb

    ready, originals, impossible = [], [], 0
    for prediction in claimed:
        try:
            with prediction.image.file.open("rb") as fh:
                data = fh.read()
            originals.append(load_rgb(data))
            ready.append((prediction, load_for_model(data, model.input_size)))
        except (FileNotFoundError, ImageDecodeError) as exc:
            logger.warning("no heatmap for prediction %s: %s", prediction.pk, exc)
            reason = (
                IMAGE_MISSING
                if isinstance(exc, FileNotFoundError)
                else IMAGE_UNREADABLE.format(detail=exc)
            )
            mine = Prediction.objects.filter(pk=prediction.pk, heatmap_claimed_by=holder)
            impossible += predictions_heatmap_refuse(mine, reason)
    if not ready:
        return 0, impossible
    maps = model.maps([array for _, array in ready], [p.label for p, _ in ready])
    made = 0
    for (prediction, _), original, heat in zip(ready, originals, maps, strict=True):
        made += _overlay_attach(prediction, overlay_png(original, heat), holder)
    return made, impossible


def _overlay_attach(prediction: Prediction, png: bytes, holder: str) -> int:
    """Write one overlay and attach it; 1 when attached, 0 when the claim was lost."""
    storage = _storage()
    field = Prediction._meta.get_field("heatmap")
    name = storage.get_available_name(
        storage.generate_filename(f"heatmaps/{prediction.image_id}-{uuid.uuid4().hex}.png"),
        max_length=field.max_length,
    )
    mine = Prediction.objects.filter(
        pk=prediction.pk, heatmap_state=HeatmapState.PENDING, heatmap_claimed_by=holder
    )
    # Named before it exists: if this process dies after the write, the name is known.
    if not mine.update(heatmap_draft=name):
        return 0  # the claim lapsed and another run took it over
    stored = file_save(storage, name, ContentFile(png), max_length=field.max_length)
    try:
        attached = mine.update(
            heatmap=stored,
            heatmap_state=HeatmapState.MADE,
            heatmap_reason="",
            heatmap_changed=timezone.now(),
            heatmap_draft="",
            heatmap_claimed_by="",
            heatmap_lease_expires=None,
        )
    except BaseException:
        files_delete(storage, [stored])  # the database failed: the retry writes another
        raise
    if not attached:
        files_delete(storage, [stored])
    return attached


def heatmaps_requeue(*, older_than_s: int) -> list[tuple[int, int]]:
    """The sweep's part for heatmaps: queue again the (case, version) of pending heatmaps
    that no run holds and no message will reach; return what was queued.

    - Claims that lapsed (the heatmap worker died or lost its database): their draft files
      are deleted and the heatmaps are due at once.
    - Pending heatmaps waiting over INFERENCE_REQUEUE_GRACE seconds while the heatmap
      queue is empty (their message was lost, or the broker was down when it was sent),
      or over ``older_than_s`` seconds whatever the queue holds.
    With heatmaps switched off, pending ones are marked impossible instead.
    """
    now = timezone.now()
    free = Prediction.objects.filter(
        heatmap_state=HeatmapState.PENDING, heatmap_lease_expires__isnull=True
    )
    if not settings.INFERENCE_HEATMAPS:
        predictions_heatmap_refuse(free, HEATMAPS_OFF)
        return []
    lapsed = list(
        Prediction.objects.filter(
            heatmap_state=HeatmapState.PENDING, heatmap_lease_expires__lt=now
        ).only("pk", "heatmap_claimed_by", "heatmap_draft")
    )
    for prediction in lapsed:
        # The claim is taken back first: from then on the run that held it cannot attach
        # its file (its attach needs the claim), so deleting that file is safe.
        taken = Prediction.objects.filter(
            pk=prediction.pk,
            heatmap_state=HeatmapState.PENDING,
            heatmap_claimed_by=prediction.heatmap_claimed_by,
            heatmap_lease_expires__lt=now,
        ).update(heatmap_claimed_by="", heatmap_lease_expires=None, heatmap_changed=None)
        if taken and prediction.heatmap_draft:
            _drafts_delete([prediction])
    if lapsed:
        logger.warning("sweep: %d heatmap claim(s) lapsed; queued again", len(lapsed))
    due = Q(heatmap_changed__isnull=True) | Q(
        heatmap_changed__lt=now - timedelta(seconds=older_than_s)
    )
    waited = Q(heatmap_changed__lt=now - timedelta(seconds=settings.INFERENCE_REQUEUE_GRACE))
    # The broker is asked only when something has waited that long.
    if free.filter(waited).exists() and dispatch.heatmap_queue_depth() == 0:
        due |= waited
    stale = free.filter(due)
    pairs = sorted(set(stale.values_list("image__case_id", "model_version_id")))
    queued = [pair for pair in pairs if dispatch.case_heatmaps_request(*pair)]
    for case_id, version_id in queued:
        stale.filter(image__case_id=case_id, model_version_id=version_id).update(
            heatmap_changed=timezone.now()
        )
    if queued:
        logger.info("sweep: queued the heatmaps of %d case(s) again: %s", len(queued), queued)
    return queued


def heatmap_files_orphaned_delete(*, older_than_s: int) -> list[str]:
    """Delete overlay files that no prediction names, as its heatmap or as a run's draft,
    and that are older than ``older_than_s`` seconds; return their names.

    The backstop behind drafts (periodic, settings.CELERY_BEAT_SCHEDULE): files left by a
    run that stalled past its lease and then died between its write and its attach, or
    by versions before heatmaps had drafts. The age spares a file whose row commits now.
    """
    storage = _storage()
    try:
        _, names = storage.listdir("heatmaps")
    except FileNotFoundError:
        return []
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    found = sorted(f"heatmaps/{name}" for name in names)
    named: set[str] = set()
    for start in range(0, len(found), 1000):  # bounded queries, whatever the folder holds
        chunk = found[start : start + 1000]
        named.update(Prediction.objects.filter(heatmap__in=chunk).values_list("heatmap", flat=True))
        named.update(
            Prediction.objects.filter(heatmap_draft__in=chunk).values_list(
                "heatmap_draft", flat=True
            )
        )
    orphans = [
        name for name in found if name not in named and storage.get_modified_time(name) < cutoff
    ]
    left = files_delete(storage, orphans)
    if orphans:
        logger.warning("deleted %d heatmap file(s) that no prediction names", len(orphans))
    return [name for name in orphans if name not in left]


def deployed_heatmap_model_preload() -> None:
    """Load the deployed model's Keras side (TensorFlow, Grad-CAM traced) in a new heatmap
    worker process, so the first case's overlays do not wait for it. Best effort: what
    goes wrong is logged, and the first task loads it again and reports properly."""
    try:
        version = ModelVersion.objects.deployed()
        if version is not None:
            import numpy as np

            model = heatmap_model_for(version)
            size = model.input_size
            # One map traces the Grad-CAM function, the slow part of a first call.
            model.maps([np.zeros((size, size, 3), np.uint8)], [version.classes[0]])
            logger.info("preloaded the heatmap model of %s", version)
    except Exception:
        logger.exception("could not preload the heatmap model")
    finally:
        connection.close()
