"""Hand a case to the workers. Called from transaction.on_commit by the cases app."""

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
    try:
        # No one waits for the task's return value: the database holds its outcome. Asking
        # for it would first subscribe this process to the result backend, which on a dead
        # Redis retries for 20 s before the send may fail: a web request would hang.
        celery_app.send_task(ANALYSE_CASE_TASK, args=[case_id], ignore_result=True)
    except Exception:
        logger.exception("could not queue case %s; the sweep will retry", case_id)
        return False
    return True


def model_evaluation_send(evaluation_id: int) -> bool:
    """Queue a local evaluation; False when the broker is down (the caller records it)."""
    try:
        celery_app.send_task(EVALUATE_MODEL_TASK, args=[evaluation_id], ignore_result=True)
    except Exception:
        logger.exception("could not queue local evaluation %s", evaluation_id)
        return False
    return True
