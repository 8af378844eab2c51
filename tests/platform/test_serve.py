"""`manage.py serve` (what `make run` starts) keeps the web up when the worker dies."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, free_port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


def _group(pgid: int) -> list[int]:
    """The live processes of a process group (Linux: /proc/PID/stat's fifth field)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def _migrated_env(var: Path) -> dict[str, str]:
    """The environment for a serve of its own: SQLite and the filesystem broker under
    ``var``, migrated."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update(VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="leukweb.settings_test")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    return env


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:.0f} s")


@pytest.mark.worker
def test_a_worker_that_dies_is_restarted_and_the_web_stays_up(tmp_path):
    env = _migrated_env(tmp_path)
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    login = f"http://127.0.0.1:{port}/login/"

    def output() -> str:
        log.flush()
        return (tmp_path / "serve.log").read_text()

    try:
        _wait(lambda: _answers(login), 60, "the web server did not answer")
        _wait(lambda: "worker started (pid" in output(), 30, "serve did not start a worker")
        started = re.search(r"worker started \(pid (\d+)\)", output())
        assert started is not None
        first = int(started.group(1))
        # The worker starts its beat and its pool as processes of its own group.
        _wait(lambda: len(_group(first)) >= 3, 60, "the worker did not start beat and pool")
        os.kill(first, signal.SIGKILL)
        _wait(lambda: "worker exited with status" in output(), 10, "the death was not logged")
        assert _answers(login), "the web went down with the worker"
        # Killed outright, the worker could not stop its beat: serve ends what it left.
        _wait(lambda: not _group(first), 10, "the dead worker's beat and pool were left running")
        _wait(lambda: len(re.findall(r"worker started", output())) == 2, 15, "no restart")
        assert serve.poll() is None
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()
    logged = (tmp_path / "serve.log").read_text()
    second = int(re.findall(r"worker started \(pid (\d+)\)", logged)[-1])
    assert not _group(second), "stopping serve left the worker's processes running"


@pytest.mark.worker
def test_a_closed_terminal_stops_serve_and_everything_it_started(tmp_path):
    """Its children run in process groups of their own, out of the terminal's reach: the
    hangup that a closed terminal sends serve must stop them too."""
    env = _migrated_env(tmp_path)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{free_port()}"],
            cwd=REPO_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait(
                lambda: len(re.findall(r"started \(pid", log_path.read_text())) == 2, 30, "no start"
            )
            pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log_path.read_text())]
            _wait(lambda: all(_group(p) for p in pids), 10, "the children did not run")
            serve.send_signal(signal.SIGHUP)
            assert serve.wait(timeout=30) == 0
        finally:
            if serve.poll() is None:
                serve.kill()
    _wait(lambda: not any(_group(p) for p in pids), 10, "a child outlived serve's hangup")


def test_the_embedded_worker_consumes_the_analysis_heatmap_and_sweep_queues(settings):
    from leukweb.management.commands.serve import worker_command

    command = worker_command(1)
    queues = next(arg for arg in command if arg.startswith("--queues="))
    assert queues.removeprefix("--queues=").split(",") == [
        settings.CELERY_TASK_DEFAULT_QUEUE,
        settings.CELERY_HEATMAP_QUEUE,
        settings.CELERY_SWEEP_QUEUE,
    ]
    assert "--beat" in command
