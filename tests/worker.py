"""A real Celery worker process for end-to-end tests.

The worker shares the test database (tests using it need
``@pytest.mark.django_db(transaction=True)`` so their rows are committed) and the
broker the settings name: Redis when REDIS_URL is set, else the filesystem queue.
"""

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from leukweb.celery import app as celery_app
from leukweb.health import worker_roundtrip

ROOT = Path(__file__).resolve().parent.parent


def _test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leukweb.settings_test",
        "DATABASE_URL": _test_database_url(),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class WorkerProcess(subprocess.Popen[bytes]):
    """A worker process, with the file its output goes to (shown when a test fails)."""

    log_path: Path


def start_worker(
    *,
    name: str | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> WorkerProcess:
    """Start a solo-pool worker on the test queue, with ``env`` added to its environment
    and its command run through ``prefix`` (``ip netns exec NAME``); the caller stops it."""
    name = name or f"test-{uuid.uuid4().hex[:8]}"
    log_path = log_path or Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
    command = [
        *prefix,
        sys.executable, "-m", "celery", "-A", "leukweb", "worker", "--pool=solo",
        "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-n", f"{name}@%h",
        "--without-mingle", "--without-gossip", "--loglevel=INFO",
    ]  # fmt: skip
    log = log_path.open("w")
    process = WorkerProcess(
        command, cwd=ROOT, env=worker_env(**(env or {})), stdout=log, stderr=subprocess.STDOUT
    )
    process.log_path = log_path
    return process


def stop_worker(process: subprocess.Popen, *, timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_worker(
    *, ready_timeout: float = 90, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> Iterator[WorkerProcess]:
    """A worker that has answered a ping, stopped on exit; its log is shown on failure."""
    celery_app.control.purge()  # messages left by an aborted earlier run
    process = start_worker(env=env, prefix=prefix)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{process.log_path.read_text()}")
            try:
                worker_roundtrip(timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker did not answer in {ready_timeout}s:\n"
                        f"{process.log_path.read_text()}"
                    ) from None
        yield process
    finally:
        stop_worker(process)
