"""Hand work to the workers: a case's analysis (from transaction.on_commit in the cases
app) and a local evaluation (from the registry page)."""

import logging

from leukweb.celery import app as celery_app

logger = logging.getLogger(__name__)

ANALYSE_CASE_TASK = "inference.analyse_case"
EVALUATE_MODEL_TASK = "inference.evaluate_model"


def case_analysis_request(case_id: int) -> bool:
    """Queue the analysis of a case's pending images; False when the broker is down.

    The images are already committed as PENDING, so a failed send loses nothing:
    the periodic sweep queues them again once the broker is back.
    """
    return _send(ANALYSE_CASE_TASK, case_id, "case %s; the sweep will retry")


def model_evaluation_send(evaluation_id: int) -> bool:
    """Queue a local evaluation; False when the broker is down (the caller records it)."""
    return _send(EVALUATE_MODEL_TASK, evaluation_id, "local evaluation %s")


def _send(task: str, pk: int, what: str) -> bool:
    try:
        # No one waits for a task's return value: the database holds its outcome. Asking
        # for it would first subscribe this process to the result backend, which on a dead
        # Redis retries for 20 s before the send may fail: a web request would hang.
        celery_app.send_task(task, args=[pk], ignore_result=True)
    except Exception:
        logger.exception("could not queue " + what, pk)
        return False
    return True
