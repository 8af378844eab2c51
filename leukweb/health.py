"""Readiness checks shared by /healthz and `manage.py check_services`."""

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from leukweb.celery import app as celery_app


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return CheckResult(False, f"database unreachable: {exc}")
    return CheckResult(True, connection.vendor)


def check_broker() -> CheckResult:
    transport = celery_app.conf.broker_url.split("://", 1)[0]
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:
        return CheckResult(False, f"{transport} broker unreachable: {exc}")
    return CheckResult(True, transport)


def check_worker() -> CheckResult:
    from leukweb.models import WorkerHeartbeat

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
    from inference.models import ModelVersion

    try:
        deployed = ModelVersion.objects.deployed()
    except Exception as exc:
        return CheckResult(False, f"cannot read the model registry: {exc}")
    if deployed is None:
        return CheckResult(False, "no model is deployed")
    return CheckResult(True, str(deployed))


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "worker": check_worker,
    "model": check_model,
}


def run_checks() -> dict[str, CheckResult]:
    return {name: check() for name, check in CHECKS.items()}


def worker_roundtrip(timeout: float = 10.0) -> tuple[dict, float]:
    """Send a ping task through the broker and wait for its result; return it and seconds."""
    from leukweb.tasks import ping

    started = time.monotonic()
    result = ping.delay().get(timeout=timeout)
    return result, time.monotonic() - started
