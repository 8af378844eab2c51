"""The periodic sweep: cases whose images wait too long are queued again."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from cases.models import Case, SmearImage
from inference.dispatch import case_analysis_request

logger = logging.getLogger(__name__)


def stale_images_requeue(*, older_than_s: int) -> list[int]:
    """Queue again the cases whose images sat PENDING or ANALYSING too long.

    Covers a lost broker message, a publish that failed while the broker was down and a
    worker that died mid-task. Re-queuing is safe because the task is idempotent; the
    images' clock restarts so that one stuck image is not queued every sweep.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = SmearImage.objects.filter(
        status__in=[SmearImage.Status.PENDING, SmearImage.Status.ANALYSING],
        status_changed__lt=cutoff,
    ).exclude(case__status=Case.Status.DRAFT)  # a draft waits for its clinician to submit
    case_ids = sorted(set(stale.values_list("case_id", flat=True)))
    queued = [case_id for case_id in case_ids if case_analysis_request(case_id)]
    SmearImage.objects.filter(pk__in=stale.filter(case_id__in=queued).values("pk")).update(
        status_changed=timezone.now()
    )
    if queued:
        logger.info("sweep: queued %d stale case(s) again: %s", len(queued), queued)
    return queued
