import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from leukweb.health import worker_roundtrip

logger = logging.getLogger("leukweb.serve")

# Seconds before a child that died is started again: quick at first, then every 30 s,
# so a child that cannot start does not spin. One that ran a minute starts over.
RESTART_DELAYS = (1, 2, 5, 10, 30)
STEADY_AFTER = 60
# Seconds what a child left behind gets to stop before it is killed.
LEFTOVER_GRACE_S = 5


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Child:
    """One process that serve keeps running: started again with back-off when it dies."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.command = command
        self.failures = 0
        self.restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        self.started = time.monotonic()
        # A process group of its own, so that what it started can be ended with it: a
        # worker killed outright (SIGKILL, the OOM killer) left its beat process running,
        # which went on sending the periodic tasks beside the next worker's beat.
        process = subprocess.Popen(self.command, start_new_session=True)
        logger.info("%s started (pid %d)", self.name, process.pid)
        return process

    def leftovers_end(self) -> None:
        """End whatever the child started and left behind: asked to stop (a beat then
        saves its schedule), killed if still there after :data:`LEFTOVER_GRACE_S`."""
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):  # nothing left in its group
            return
        logger.info("%s left processes running; they were asked to stop", self.name)
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        logger.warning("%s left processes behind that did not stop; they were killed", self.name)

    def check(self, now: float) -> None:
        """Notice a death and schedule the restart; restart when its time has come."""
        if self.restart_at is None:
            code = self.process.poll()
            if code is None:
                if now - self.started > STEADY_AFTER:
                    self.failures = 0
                return
            self.leftovers_end()
            delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]
            self.failures += 1
            self.restart_at = now + delay
            logger.warning("%s exited with status %s; restarting in %d s", self.name, code, delay)
        elif now >= self.restart_at:
            self.restart_at = None
            self.process = self._start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def worker_command(concurrency: int) -> list[str]:
    """The embedded worker: beat, and every queue (the embedded install has TensorFlow)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "leukweb",
        "worker",
        "--beat",
        "--queues="
        + ",".join(
            [
                settings.CELERY_TASK_DEFAULT_QUEUE,
                settings.CELERY_HEATMAP_QUEUE,
                settings.CELERY_SWEEP_QUEUE,
            ]
        ),
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        "-n",
        "worker@%h",
        f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}",
    ]


class Command(BaseCommand):
    help = (
        "Run the web server and a Celery worker together; a child that dies is started "
        "again (the web stays up); Ctrl-C stops both."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port for the web server")
        parser.add_argument("--concurrency", type=int, default=1, help="worker processes")

    def handle(self, *args, addr, concurrency, **options):
        worker_cmd = worker_command(concurrency)
        web_cmd = [sys.executable, "manage.py", "runserver", addr, "--noreload"]
        children = [Child("worker", worker_cmd), Child("web", web_cmd)]
        # Ctrl-C, SIGTERM and a closed terminal (SIGHUP) stop the children from here: each
        # runs in its own process group, out of the terminal's reach. SIGINT is set
        # explicitly: a shell starting us in the background ignores it.
        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, _interrupt)
        try:
            # Beside the supervision loop: a worker that dies before it answers is noticed
            # and started again at once, not after the ping's time-out.
            threading.Thread(target=self._report_worker, name="ping", daemon=True).start()
            self.stdout.write(self.style.SUCCESS(f"LeukWeb is up: http://{addr}/  (Ctrl-C stops)"))
            while True:
                now = time.monotonic()
                for child in children:
                    child.check(now)
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("stopping web and worker...")
        finally:
            self._stop(children)

    def _report_worker(self) -> None:
        try:
            answer, seconds = worker_roundtrip(timeout=120)
        except Exception as exc:
            self.stderr.write(self.style.WARNING(f"worker did not answer a ping yet: {exc}"))
            return
        self.stdout.write(f"worker {answer['hostname']} answered a ping in {seconds:.2f}s")

    @staticmethod
    def _stop(children: list[Child]) -> None:
        for child in children:
            child.stop()
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.leftovers_end()
