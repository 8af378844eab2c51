"""Schemathesis against the OpenAPI schema of a real server (gunicorn, DEBUG off, the
embedded defaults in a fresh VAR_DIR) as a signed-in clinician with a real API token:
no request it derives from the schema, valid or not, may get a server error, a response
that breaks the schema or one of a content type the schema does not name.

Bounded: a fixed seed (API_FUZZ_SEED to explore others), a few dozen cases an operation
and API_FUZZ_SECONDS for the whole run. `make test-api-fuzz` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, free_port

pytestmark = pytest.mark.api_fuzz

PASSWORD = "alice-ward-round-7"
PERSONA = """
from accounts.models import Role
from accounts.services import user_create
from cases.services import patient_create
alice, _ = user_create(username="alice", role=Role.CLINICIAN, teams=["Team A"], password=PASSWORD)
patient_create(user=alice, team=alice.teams.get(), identifier="FUZZ-1", year_of_birth=1970)
"""
# What the fuzzer may not do with its own credentials: revoke them halfway through.
EXCLUDED_OPERATIONS = ["auth_token_destroy"]
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def _wait_until_up(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="module")
def api_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    var = tmp_path_factory.mktemp("fuzz-var")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update(
        VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="leukweb.settings",
        # The fuzzer tests what the API answers, not its rates: writes past them would only
        # be 429s that leave the logic behind them untested.
        API_THROTTLE_WRITES="100000/minute",
        API_THROTTLE_UPLOADS="100000/minute",
        API_THROTTLE_TOKEN="100000/minute",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=REPO_ROOT, env=env, check=True)
    subprocess.run(
        [*manage, "shell", "-c", f"PASSWORD = {PASSWORD!r}\n{PERSONA}"],
        cwd=REPO_ROOT, env=env, check=True,
    )  # fmt: skip
    port = free_port()
    log_path = var / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [Path(sys.executable).parent / "gunicorn", "leukweb.wsgi", "--workers", "2",
             "--bind", f"127.0.0.1:{port}", "--timeout", "60"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(f"{base}/login/", timeout=90)
            yield base, log_path
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _token(base: str) -> str:
    body = f"username=alice&password={PASSWORD}".encode()
    request = urllib.request.Request(f"{base}/api/auth/token/", data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.load(response)["token"]


def test_no_request_derived_from_the_schema_gets_a_server_error_or_breaks_the_schema(
    api_server, tmp_path
):
    base, server_log = api_server
    seconds = os.environ.get("API_FUZZ_SECONDS", "150")
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{base}/api/schema/",
        "--header", f"Authorization: Token {_token(base)}",
        "--checks", CHECKS,
        *[arg for op in EXCLUDED_OPERATIONS for arg in ("--exclude-operation-id", op)],
        "--max-examples", os.environ.get("API_FUZZ_EXAMPLES", "25"),
        "--max-time", seconds,
        "--seed", os.environ.get("API_FUZZ_SEED", "12"),
        "--workers", "2",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=int(seconds) + 120
    )
    output = result.stdout + result.stderr
    errors = [
        line for line in server_log.read_text().splitlines() if "Internal Server Error" in line
    ]
    assert result.returncode == 0 and not errors, output[-6000:] + "\n".join(errors)
    assert " passed" in output and " failed" not in output
