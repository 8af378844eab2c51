"""Whether analysis can go on: the broker, a live worker, a deployed model, a backlog
that is not too old and a storage that takes uploads.

/healthz reports these (beside the database), and a case that waits tells its clinician
which one is missing, or that it is overdue. Nothing is lost while one is: images stay
stored as pending and the periodic sweep queues them again once it is back.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils import timezone

from cases.files import file_save, files_delete
from inference.dispatch import analysis_queue_depth
from inference.models import ModelVersion, WorkerHeartbeat
from inference.selectors import waiting_images


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    # Figures for operators (queue depth, wait, free space), beside the sentence.
    data: dict[str, Any] = field(default_factory=dict)


def check_broker() -> CheckResult:
    transport = current_app.conf.broker_url.split("://", 1)[0]
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:
        return CheckResult(False, f"{transport} broker unreachable: {exc}")
    return CheckResult(True, transport)


def check_worker() -> CheckResult:
    since = timezone.now() - timedelta(seconds=settings.WORKER_STALE_AFTER)
    try:
        alive = list(
            WorkerHeartbeat.objects.filter(last_seen__gte=since).values_list("hostname", flat=True)
        )
    except Exception as exc:
        return CheckResult(False, f"cannot read worker heartbeats: {exc}")
    if not alive:
        return CheckResult(False, f"no worker heartbeat in the last {settings.WORKER_STALE_AFTER}s")
    return CheckResult(True, ", ".join(sorted(alive)))


def check_model() -> CheckResult:
    try:
        deployed = ModelVersion.objects.deployed()
    except Exception as exc:
        return CheckResult(False, f"cannot read the model registry: {exc}")
    if deployed is None:
        return CheckResult(False, "no model is deployed")
    return CheckResult(True, str(deployed))


def analysis_stalled_reason() -> str:
    """Why a queued analysis cannot go on right now, for the clinician; "" when it can."""
    if not check_broker().ok:
        return (
            "The analysis queue is unreachable: the images are saved and will be analysed "
            "within minutes of it coming back."
        )
    if not check_worker().ok:
        return (
            "No analysis worker is running: the images are saved and will be analysed as "
            "soon as one starts."
        )
    if not check_model().ok:
        return (
            "No model is deployed: the images are saved and will be analysed within minutes "
            "of an administrator deploying one."
        )
    return ""


def check_queue() -> CheckResult:
    """The backlog: messages in the broker's queue, images waiting and the oldest one's
    wait; failing once that wait is over ANALYSIS_OVERDUE_AFTER."""
    try:
        waiting = waiting_images()
    except Exception as exc:
        return CheckResult(False, f"cannot read the waiting images: {exc}")
    threshold = settings.ANALYSIS_OVERDUE_AFTER
    data = {**waiting, "broker_messages": analysis_queue_depth(), "threshold_s": threshold}
    if waiting["oldest_wait_s"] > threshold:
        return CheckResult(
            False,
            f"the oldest of {waiting['images']} waiting images has waited "
            f"{waiting['oldest_wait_s']:.0f}s, over the {threshold}s threshold",
            data,
        )
    return CheckResult(True, f"{waiting['images']} images waiting", data)


def check_storage() -> CheckResult:
    """The media storage takes a write (a probe file, removed at once) and, where it is a
    local disk, has at least STORAGE_MIN_FREE_MB free."""
    name = f"healthz/{uuid.uuid4().hex}"
    try:
        stored = file_save(default_storage, name, ContentFile(b"probe"))
    except Exception as exc:
        return CheckResult(False, f"media storage not writable: {exc}", {"writable": False})
    files_delete(default_storage, [stored])
    data: dict[str, Any] = {"writable": True, "free_mb": None}
    if not isinstance(default_storage, FileSystemStorage):  # an object store: no disk here
        return CheckResult(True, "writable", data)
    free_mb = shutil.disk_usage(default_storage.location).free // 2**20
    data.update(free_mb=free_mb, min_free_mb=settings.STORAGE_MIN_FREE_MB)
    if free_mb < settings.STORAGE_MIN_FREE_MB:
        return CheckResult(
            False, f"{free_mb} MiB free, under the {settings.STORAGE_MIN_FREE_MB} MiB minimum", data
        )
    return CheckResult(True, f"writable, {free_mb} MiB free", data)


def analysis_overdue_reason(since: datetime) -> str:
    """What a clinician reads when a case's images wait longer than they should."""
    waited = max(1, round((timezone.now() - since).total_seconds() / 60))
    expected = max(1, round(settings.ANALYSIS_OVERDUE_AFTER / 60))
    return (
        f"The analysis is overdue: its images have waited {waited} min, longer than the "
        f"{expected} min expected. They are saved and will be analysed; the delay shows on "
        "the operators' health check."
    )
