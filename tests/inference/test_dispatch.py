"""Queueing a case on a dead broker: refused at once, and the same process queues again
once the broker is back (a real Redis server, started on a free port mid-test)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, subprocess, sys, time
import django
django.setup()
import redis
from inference.dispatch import case_analysis_request
from leukweb.celery import app

port = int(sys.argv[1])
down = case_analysis_request(4242)
server = subprocess.Popen(
    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
     "--appendonly", "no"],
    stdout=subprocess.DEVNULL,
)
try:
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    up = case_analysis_request(4242)
    with app.connection_for_read() as conn:
        message = conn.SimpleQueue(app.conf.task_default_queue).get(timeout=5)
        message.ack()
    print(json.dumps({"down": down, "up": up, "task": message.headers["task"],
                      "args": message.decode()[0]}))
finally:
    server.terminate()
    server.wait()
"""


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_a_dead_broker_refuses_fast_and_the_process_queues_again_once_it_is_back(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="leukweb.settings_test",
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        VAR_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"down": False, "up": True, "task": "inference.analyse_case", "args": [4242]}
    # The send never waited on the result backend (20 retries, then a broken process).
    assert "result store" not in done.stderr and "Retry (" not in done.stderr
    assert "could not queue case 4242; the sweep will retry" in done.stderr
