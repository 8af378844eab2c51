"""The periodic sweep: work that a dead worker or a lost message left behind is queued
again, within seconds of it being found (settings: INFERENCE_* explain the timings)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from cases.models import Case, SmearImage
from inference import dispatch
from inference.services.claims import claims_lapsed_release
from inference.services.heatmaps import heatmaps_requeue

logger = logging.getLogger(__name__)


def stale_images_requeue(*, older_than_s: int) -> list[int]:
    """Queue again the cases of images that nobody is analysing and no message will reach.

    - Images whose worker claim lapsed (the worker died or lost its database): at once.
    - Pending images waiting over INFERENCE_REQUEUE_GRACE seconds while the broker's queue
      is empty: no message is on its way to them (a broker that restarted without its
      data, a worker killed before it claimed them).
    - Pending images waiting over ``older_than_s`` seconds, whatever the queue holds (a
      message lost behind a backlog, or never sent while the broker was down).

    Re-queuing is safe because the task is idempotent and claims keep two runs apart; the
    images' clock restarts when their case is queued, so one stuck image is not queued at
    every sweep. Evaluations whose worker claim lapsed are queued again too, and so are
    heatmaps that are pending with no run or message on its way (heatmaps_requeue).
    """
    now = timezone.now()
    _, evaluations = claims_lapsed_release()
    for evaluation_id in evaluations:
        dispatch.model_evaluation_send(evaluation_id)
    due = Q(status_changed__lt=now - timedelta(seconds=older_than_s))
    if dispatch.analysis_queue_depth() == 0:
        due |= Q(status_changed__lt=now - timedelta(seconds=settings.INFERENCE_REQUEUE_GRACE))
    stale = (
        SmearImage.objects.filter(due)
        .filter(
            Q(status=SmearImage.Status.PENDING)
            # Claimed before claims had leases (or by a run that never set one).
            | Q(status=SmearImage.Status.ANALYSING, lease_expires__isnull=True)
        )
        .exclude(case__status=Case.Status.DRAFT)  # a draft waits for its clinician to submit
    )
    case_ids = sorted(set(stale.values_list("case_id", flat=True)))
    queued = [case_id for case_id in case_ids if dispatch.case_analysis_request(case_id)]
    SmearImage.objects.filter(pk__in=stale.filter(case_id__in=queued).values("pk")).update(
        status_changed=timezone.now()
    )
    if queued:
        logger.info("sweep: queued %d stale case(s) again: %s", len(queued), queued)
    heatmaps_requeue(older_than_s=older_than_s)
    return queued
