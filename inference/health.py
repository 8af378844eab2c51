"""Whether analysis can go on: the broker, a live worker and a deployed model.

/healthz reports these (beside the database), and a case that waits tells its clinician
which one is missing. Nothing is lost while one is: images stay stored as pending and the
periodic sweep queues them again once it is back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.utils import timezone

from inference.models import ModelVersion, WorkerHeartbeat


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


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
