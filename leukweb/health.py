"""Readiness checks for /healthz and `manage.py serve`: the database, then what analysis
needs (inference.health)."""

import time

from django.db import connection

from inference.health import (
    CheckResult,
    check_broker,
    check_model,
    check_queue,
    check_storage,
    check_worker,
)


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return CheckResult(False, f"database unreachable: {exc}")
    return CheckResult(True, connection.vendor)


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "worker": check_worker,
    "model": check_model,
    "queue": check_queue,
    "storage": check_storage,
}


def run_checks() -> dict[str, CheckResult]:
    return {name: check() for name, check in CHECKS.items()}


def worker_roundtrip(timeout: float = 10.0) -> tuple[dict, float]:
    """Send a ping task through the broker and wait for its result; return it and seconds."""
    from leukweb.tasks import ping

    started = time.monotonic()
    result = ping.delay().get(timeout=timeout)
    return result, time.monotonic() - started
