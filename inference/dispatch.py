"""Hand work to the workers: a case's analysis (when the cases app announces a
submission), its heatmaps (once its predictions are stored) and a local evaluation
(from the registry page)."""

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases.models import SmearImage

logger = logging.getLogger(__name__)

ANALYSE_CASE_TASK = "inference.analyse_case"
EVALUATE_MODEL_TASK = "inference.evaluate_model"
MAKE_HEATMAPS_TASK = "inference.make_heatmaps"


def case_analysis_request(case_id: int) -> bool:
    """Queue the analysis of a case's pending images; False when the broker is down.

    The images are already committed as PENDING, so a failed send loses nothing:
    the periodic sweep queues them again once the broker is back.
    """
    return _send(ANALYSE_CASE_TASK, case_id, "case %s; the sweep will retry")


def case_heatmaps_request(case_id: int, model_version_id: int) -> bool:
    """Queue the Grad-CAM overlays of a case's stored predictions on the heatmap queue;
    False when the broker is down (the predictions stand, their heatmaps stay pending)."""
    return _send(MAKE_HEATMAPS_TASK, case_id, "heatmaps of case %s", model_version_id)


def model_evaluation_send(evaluation_id: int) -> bool:
    """Queue a local evaluation; False when the broker is down (the caller records it)."""
    return _send(EVALUATE_MODEL_TASK, evaluation_id, "local evaluation %s")


def case_submitted_receive(sender, *, case_id: int, **kwargs) -> None:
    """cases.signals.case_submitted: pin the model version deployed now as the case's (in
    the submission's transaction), and queue the analysis once rows, files and hashes are
    committed, so a worker never sees less than the clinician submitted."""
    from inference.services.versions import case_analysis_pin

    case_analysis_pin(case_id=case_id)
    transaction.on_commit(lambda: _case_analysis_queue(case_id))


def analysis_queue_depth() -> int | None:
    """Messages waiting in the broker's analysis queue; None when the broker is unreachable."""
    return queue_depth(settings.CELERY_TASK_DEFAULT_QUEUE)


def heatmap_queue_depth() -> int | None:
    """Messages waiting in the broker's heatmap queue; None when the broker is unreachable."""
    return queue_depth(settings.CELERY_HEATMAP_QUEUE)


def queue_depth(queue: str) -> int | None:
    """Messages waiting in one of the broker's queues; None when the broker is unreachable."""
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            # Declaring is a no-op for a queue that exists, and answers its length; a
            # passive declare would refuse an empty Redis queue (Redis keeps no empty list).
            # The stubs know the abstract channel only; every transport's has queue_declare.
            channel: Any = conn.default_channel
            declared = channel.queue_declare(queue=queue, durable=True, auto_delete=False)
            return int(declared.message_count)
    except Exception:
        logger.warning("could not read the length of queue %s", queue, exc_info=True)
        return None


def _case_analysis_queue(case_id: int) -> None:
    if not case_analysis_request(case_id):
        # Never sent (broker down): the next sweep takes these images at once, rather than
        # after the delay meant for messages that may still be waiting in a queue.
        SmearImage.objects.filter(case_id=case_id, status=SmearImage.Status.PENDING).update(
            status_changed=timezone.now() - timedelta(seconds=settings.INFERENCE_STALE_AFTER)
        )


def _send(task: str, pk: int, what: str, *more: int) -> bool:
    try:
        # No one waits for a task's return value: the database holds its outcome. Asking
        # for it would first subscribe this process to the result backend, which on a dead
        # Redis retries for 20 s before the send may fail: a web request would hang.
        current_app.send_task(task, args=[pk, *more], ignore_result=True)
    except Exception:
        logger.exception("could not queue " + what, pk)
        return False
    return True
