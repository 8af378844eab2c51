"""A real Celery worker process, through the project's own code path (no eager mode)."""

from http import HTTPStatus

import pytest

from inference.health import check_worker
from inference.models import WorkerHeartbeat
from leukweb.health import worker_roundtrip
from tests.worker import running_worker

pytestmark = [pytest.mark.worker, pytest.mark.embedded, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_answers_a_ping_through_the_broker():
    with running_worker() as worker:
        answer, seconds = worker_roundtrip(timeout=20)
    assert answer["pid"] == worker.pid
    assert seconds < 20


def test_healthz_sees_the_worker_heartbeat_and_forgets_it_after_shutdown(client):
    with running_worker():
        assert check_worker().ok
        checks = client.get("/healthz").json()["checks"]
        assert checks["worker"]["ok"], checks["worker"]
        assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert not WorkerHeartbeat.objects.exists()
    response = client.get("/healthz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert not response.json()["checks"]["worker"]["ok"]
