"""A worker's heartbeat thread: it upserts its WorkerHeartbeat row every few seconds (only
in a worker that takes analyses: the sweeper's beat would make /healthz count it)."""

import logging
import os
import threading

from celery import Celery
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from inference.models import WorkerHeartbeat

logger = logging.getLogger(__name__)
_stop = threading.Event()


def consumes_analyses(celery_app: Celery) -> bool:
    """Whether this worker takes analyses (the default queue), not only the sweep: only
    such a worker counts as alive for /healthz and warms the model."""
    return settings.CELERY_TASK_DEFAULT_QUEUE in celery_app.amqp.queues.consume_from


def consumes_heatmaps(celery_app: Celery) -> bool:
    """Whether this worker makes heatmaps (it has TensorFlow and warms the Keras model)."""
    return settings.CELERY_HEATMAP_QUEUE in celery_app.amqp.queues.consume_from


def beat(hostname: str, started) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={"pid": os.getpid(), "started": started, "last_seen": timezone.now()},
    )


def _beat_safely(hostname: str, started) -> None:
    try:
        close_old_connections()
        beat(hostname, started)
    except Exception:
        # A database outage must not kill the worker; /healthz will show it stale.
        logger.exception("worker heartbeat failed")


def _run(hostname: str, started) -> None:
    while not _stop.wait(settings.WORKER_HEARTBEAT_INTERVAL):
        _beat_safely(hostname, started)


def start(hostname: str) -> None:
    """Beat once now, so a worker that is ready is also visible, then keep beating."""
    _stop.clear()
    started = timezone.now()
    _beat_safely(hostname, started)
    threading.Thread(target=_run, args=(hostname, started), name="heartbeat", daemon=True).start()


def stop(hostname: str) -> None:
    _stop.set()
    try:
        WorkerHeartbeat.objects.filter(hostname=hostname).delete()
    except Exception:
        logger.exception("could not remove heartbeat of %s", hostname)
