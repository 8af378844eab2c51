"""Claims with leases: which worker process is analysing an image (or running an
evaluation), for how long the claim holds, and its renewal while the work goes on.

A claim lapses unless its holder renews it, so the work of a worker that was killed, or
lost its database, is found by the sweep within seconds (``claims_lapsed_release``)
instead of waiting for the broker's visibility timeout; and a second delivery of the same
message leaves a live claim alone instead of doing the work twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from cases.models import Case, SmearImage
from inference.models import ModelEvaluation, ModelVersion

logger = logging.getLogger(__name__)


def lease_end(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.INFERENCE_CLAIM_LEASE)


def claim_open(holder: str = "", *, prefix: str = "") -> Q:
    """Rows nobody holds (never claimed, or their holder stopped renewing the claim), or
    that this holder holds already (a retry of its own task). ``prefix`` names the claim's
    fields where a row has several (a prediction's heatmap claim: "heatmap_")."""
    mine = Q(**{f"{prefix}claimed_by": holder}) if holder else Q(pk__in=[])
    return (
        Q(**{f"{prefix}lease_expires__isnull": True})
        | Q(**{f"{prefix}lease_expires__lt": timezone.now()})
        | mine
    )


def images_claim(*, case_id: int, version: ModelVersion, holder: str) -> list[SmearImage]:
    """Lock the case and claim its images that ``version`` has not predicted yet.

    Images another live worker holds are left to it; those of a dead worker are taken as
    soon as their lease lapsed. FAILED ones are final; a draft case's images wait until it
    is submitted.
    """
    now = timezone.now()
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        if case.status == Case.Status.DRAFT:
            return []  # not submitted: its clinician may still add or change images
        images = list(
            case.images.select_for_update()
            .filter(status__in=[SmearImage.Status.PENDING, SmearImage.Status.ANALYSING])
            .filter(claim_open(holder))
            .exclude(predictions__model_version=version)
        )
        if images:
            SmearImage.objects.filter(pk__in=[i.pk for i in images]).update(
                status=SmearImage.Status.ANALYSING,
                status_changed=now,
                claimed_by=holder,
                lease_expires=lease_end(now),
            )
            if case.status != Case.Status.REVIEWED:
                case.status = Case.Status.ANALYSING
                case.save(update_fields=["status", "updated"])
    return images


def evaluation_claim(*, evaluation_id: int, holder: str) -> bool:
    """Claim a queued evaluation; False when it is done or another live worker runs it."""
    return bool(
        ModelEvaluation.objects.filter(pk=evaluation_id, status=ModelEvaluation.Status.PENDING)
        .filter(claim_open(holder))
        .update(claimed_by=holder, lease_expires=lease_end())
    )


def images_release(pks: list[int], holder: str) -> None:
    """Hand back the images this holder still holds after its run failed (the task will be
    retried, by this worker or another): pending again at once. Best effort: if the
    database is what failed, the claims lapse and the sweep hands them back instead."""
    try:
        SmearImage.objects.filter(
            pk__in=pks, claimed_by=holder, status=SmearImage.Status.ANALYSING
        ).update(status=SmearImage.Status.PENDING, claimed_by="", lease_expires=None)
    except Exception:
        logger.warning("could not hand back the claims of %s", holder, exc_info=True)


@contextmanager
def lease_kept(
    model: type[models.Model], pks: list[int], holder: str, *, prefix: str = ""
) -> Iterator[None]:
    """Renew the holder's claims on these rows every quarter lease until the block ends.

    A thread of the process doing the work, so the claims live exactly as long as it does.
    A failed renewal (the database is down) is logged and tried again: the work itself
    will retry too, and a claim that lapsed meanwhile is only work done twice, which the
    unique constraints make harmless.
    """
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(settings.INFERENCE_CLAIM_LEASE / 4):
                try:
                    # After a database outage the broken connection is replaced, not reused.
                    connection.close_if_unusable_or_obsolete()
                    model._default_manager.filter(
                        pk__in=pks, **{f"{prefix}claimed_by": holder}
                    ).update(**{f"{prefix}lease_expires": lease_end()})
                except Exception:
                    logger.warning("could not renew the claims of %s", holder, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=renew, name="claim-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def claims_lapsed_release() -> tuple[set[int], list[int]]:
    """Hand back what dead workers held: images of lapsed claims become pending again, due
    at once, and queued evaluations of lapsed claims are released.

    Returns (case ids, evaluation ids) to queue again.
    """
    now = timezone.now()
    lapsed = SmearImage.objects.filter(
        status=SmearImage.Status.ANALYSING, lease_expires__lt=now
    ).exclude(case__status=Case.Status.DRAFT)
    case_ids = set(lapsed.values_list("case_id", flat=True))
    if case_ids:
        count = lapsed.update(
            status=SmearImage.Status.PENDING,
            claimed_by="",
            lease_expires=None,
            # Due for the sweep now, whatever the queue holds: their message is spent.
            status_changed=now - timedelta(seconds=settings.INFERENCE_STALE_AFTER + 1),
        )
        logger.warning(
            "sweep: %d image(s) of case(s) %s were held by a worker that stopped renewing "
            "its claim; handed back",
            count,
            sorted(case_ids),
        )
    evaluations = list(
        ModelEvaluation.objects.filter(
            status=ModelEvaluation.Status.PENDING, lease_expires__lt=now
        ).values_list("pk", flat=True)
    )
    if evaluations:
        ModelEvaluation.objects.filter(pk__in=evaluations).update(claimed_by="", lease_expires=None)
        logger.warning("sweep: evaluation(s) %s lost their worker; queued again", evaluations)
    return case_ids, evaluations
