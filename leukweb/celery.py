"""The Celery application: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leukweb.settings")

app = Celery("leukweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

SWEEP_TASK = "inference.sweep_stale_images"
HEATMAP_TASK = "inference.make_heatmaps"


def task_route(name, args, kwargs, options, task=None, **kw):
    """The sweep and the heatmaps go to their own queues (CELERY_SWEEP_QUEUE,
    CELERY_HEATMAP_QUEUE), everything else to the default."""
    from django.conf import settings

    if name == SWEEP_TASK:
        return {"queue": settings.CELERY_SWEEP_QUEUE}
    if name == HEATMAP_TASK:
        return {"queue": settings.CELERY_HEATMAP_QUEUE}
    return None


@worker_ready.connect
def _start_heartbeat(sender, **kwargs) -> None:
    from inference import heartbeat

    if heartbeat.consumes_analyses(sender.app):
        heartbeat.start(sender.hostname)


@worker_shutdown.connect
def _stop_heartbeat(sender, **kwargs) -> None:
    from inference import heartbeat

    heartbeat.stop(sender.hostname)
