import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from leukweb.health import worker_roundtrip


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the web server and a Celery worker together; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port for the web server")
        parser.add_argument("--concurrency", type=int, default=1, help="worker processes")

    def handle(self, *args, addr, concurrency, **options):
        worker_cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "leukweb",
            "worker",
            "--beat",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "-n",
            "worker@%h",
            f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}",
        ]
        web_cmd = [sys.executable, "manage.py", "runserver", addr, "--noreload"]
        children = {
            "worker": subprocess.Popen(worker_cmd),
            "web": subprocess.Popen(web_cmd),
        }
        # Ctrl-C reaches the children through the terminal; SIGTERM is forwarded here.
        # SIGINT is set explicitly too: a shell starting us in the background ignores it.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            self._report_worker()
            self.stdout.write(self.style.SUCCESS(f"LeukWeb is up: http://{addr}/  (Ctrl-C stops)"))
            while True:
                for name, child in children.items():
                    if child.poll() is not None:
                        raise CommandError(f"{name} exited with status {child.returncode}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("stopping web and worker...")
        finally:
            self._stop(children.values())

    def _report_worker(self) -> None:
        try:
            answer, seconds = worker_roundtrip(timeout=120)
        except Exception as exc:
            self.stderr.write(self.style.WARNING(f"worker did not answer a ping yet: {exc}"))
            return
        self.stdout.write(f"worker {answer['hostname']} answered a ping in {seconds:.2f}s")

    @staticmethod
    def _stop(children) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
