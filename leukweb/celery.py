"""The Celery application: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leukweb.settings")

app = Celery("leukweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _start_heartbeat(sender, **kwargs) -> None:
    from inference import heartbeat

    heartbeat.start(sender.hostname)


@worker_shutdown.connect
def _stop_heartbeat(sender, **kwargs) -> None:
    from inference import heartbeat

    heartbeat.stop(sender.hostname)
