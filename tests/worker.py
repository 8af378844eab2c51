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
from typing import Any

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
    queues: str | None = None,
    python_options: tuple[str, ...] = (),
    prefix: Sequence[str] = (),
    pool: str = "solo",
) -> WorkerProcess:
    """Start a worker (solo pool unless ``pool`` says "prefork": one child, as in
    production) on the test queue (or ``queues``, comma-separated), with
    ``env`` added to its environment, ``python_options`` to its interpreter's command
    line, and its command run through ``prefix`` (``ip netns exec NAME``); the caller
    stops it."""
    name = name or f"test-{uuid.uuid4().hex[:8]}"
    log_path = log_path or Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
    command = [
        *prefix,
        sys.executable, *python_options, "-m", "celery", "-A", "leukweb", "worker",
        f"--pool={pool}", "--concurrency=1",
        "-Q", queues or settings.CELERY_TASK_DEFAULT_QUEUE, "-n", f"{name}@%h",
        "--without-mingle", "--without-gossip", "--loglevel=INFO",
    ]  # fmt: skip
    log = log_path.open("w")
    process = WorkerProcess(
        command, cwd=ROOT, env=worker_env(**(env or {})), stdout=log, stderr=subprocess.STDOUT
    )
    process.log_path = log_path
    return process


def purge_test_queues() -> None:
    """Empty the test analysis and heatmap queues."""
    with celery_app.connection_for_write() as connection:
        channel: Any = connection.default_channel  # kombu types only its abstract channel
        for queue in (settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_HEATMAP_QUEUE):
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: S112 a queue never declared has nothing to purge
                continue


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
    *,
    ready_timeout: float = 90,
    env: dict[str, str] | None = None,
    queues: str | None = None,
    purge: bool = True,
    python_options: tuple[str, ...] = (),
    prefix: Sequence[str] = (),
    pool: str = "solo",
) -> Iterator[WorkerProcess]:
    """A worker that is ready (it answered a ping, or, on queues without the test queue
    the ping goes to, it said so), stopped on exit; its log is shown on failure."""
    if purge:
        purge_test_queues()  # messages left by an aborted earlier run
    process = start_worker(
        env=env, queues=queues, python_options=python_options, prefix=prefix, pool=pool
    )
    pingable = queues is None or settings.CELERY_TASK_DEFAULT_QUEUE in queues.split(",")
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{process.log_path.read_text()}")
            try:
                if pingable:
                    worker_roundtrip(timeout=5)
                elif " ready." not in process.log_path.read_text():
                    raise TimeoutError("not ready yet")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker did not answer in {ready_timeout}s:\n"
                        f"{process.log_path.read_text()}"
                    ) from None
                time.sleep(0.2)
        yield process
    finally:
        stop_worker(process)
