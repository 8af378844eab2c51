"""The Celery application: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leukweb.settings")
# A worker serves no URL, but Celery runs Django's system checks as it starts, and those
# import the URL configuration and every view behind it (the API schema, QR codes...):
# about a second of an analysis worker's start to its first prediction (#13). The web
# process, `manage.py` commands and CI still run them.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")
# ONNX Runtime's threads are a worker's compute threads. numpy's OpenBLAS would start a
# pool of its own for the guard's small products (and its Cholesky factor at load), and its
# threads spin after each call, on the cores ONNX Runtime needs next: a guarded ResNet-50
# loaded with 1.6-3.0 s of CPU instead of 1.1 (#13). Read by OpenBLAS when numpy is first
# imported, which in a worker is after this module.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

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
