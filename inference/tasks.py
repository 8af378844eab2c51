"""Celery shells around inference services. Task names and signatures are public: queued
messages outlive deploys, so change them only by adding new tasks."""

import os
import socket
import threading
from dataclasses import asdict

from celery import current_app, shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from inference import heartbeat
from inference.services import analysis, evaluation, heatmaps, sweep

# Worth retrying: the database, the storage or the broker may be back in a moment.
# FileNotFoundError is an OSError too, but services turn it into a final FAILED first.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError, BrokerError)


def claim_holder(task) -> str:
    """Who holds a claim: this worker and the process running the task."""
    return f"{task.request.hostname or socket.gethostname()}:{os.getpid()}"


@shared_task(
    name="inference.analyse_case",
    bind=True,
    ignore_result=True,  # the outcome is in the database; nobody reads the return value
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def analyse_case(self, case_id: int) -> dict:
    """Classify a case's new images with the deployed (and shadow) model."""
    host = self.request.hostname or socket.gethostname()
    return asdict(
        analysis.case_analyse(case_id=case_id, worker_host=host, holder=claim_holder(self))
    )


@shared_task(
    name="inference.make_heatmaps",
    bind=True,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def make_heatmaps(self, case_id: int, model_version_id: int) -> dict:
    """Grad-CAM overlays for the next few of a case's predictions by one version that have
    none yet (the task queues the rest again: each message is short).

    Routed to the heatmap queue (leukweb.celery.task_route): only workers with
    TensorFlow consume it."""
    return asdict(
        heatmaps.case_heatmaps_make(
            case_id=case_id, model_version_id=model_version_id, holder=claim_holder(self)
        )
    )


@shared_task(
    name="inference.evaluate_model",
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),  # the set's own errors fail the row
    retry_backoff=2,
    max_retries=5,
    time_limit=settings.EVALUATION_TIME_LIMIT,
    soft_time_limit=settings.EVALUATION_TIME_LIMIT - 30,
)
def evaluate_model(self, evaluation_id: int) -> None:
    """A local evaluation asked for from the registry page."""
    evaluation.model_evaluation_run(evaluation_id=evaluation_id, holder=claim_holder(self))


@shared_task(name="inference.sweep_stale_images", acks_late=True, ignore_result=True)
def sweep_stale_images(older_than_s: int = 600) -> list[int]:
    """Periodic (celery beat): queue again the cases of images stuck pending or analysing."""
    return sweep.stale_images_requeue(older_than_s=older_than_s)


@shared_task(name="inference.delete_orphan_heatmaps", acks_late=True, ignore_result=True)
def delete_orphan_heatmaps(older_than_s: int = 3600) -> list[str]:
    """Periodic (celery beat): overlay files that no prediction names are deleted."""
    return heatmaps.heatmap_files_orphaned_delete(older_than_s=older_than_s)


@worker_process_init.connect
def _preload_deployed_model(**kwargs) -> None:
    """A new pool process warms the deployed model in the background (not in the parent,
    which forks the pool and should not hold TensorFlow). A task arriving meanwhile waits
    for the same load instead of starting another. A heatmap worker warms the Keras model
    the same way; a worker that only sweeps loads nothing."""
    if heartbeat.consumes_analyses(current_app):
        threading.Thread(
            target=analysis.deployed_model_preload, name="model-preload", daemon=True
        ).start()
    if heartbeat.consumes_heatmaps(current_app):
        threading.Thread(
            target=heatmaps.deployed_heatmap_model_preload, name="heatmap-preload", daemon=True
        ).start()
