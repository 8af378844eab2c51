"""/healthz for operators: the backlog and the oldest wait against a threshold, the storage
(writable, free space; a real read-only and a real nearly full disk), and worker
liveness within 15 seconds."""

import subprocess
from datetime import timedelta
from http import HTTPStatus

import pytest
from celery import Celery
from django.conf import settings
from django.utils import timezone

from cases.models import SmearImage
from inference.heartbeat import consumes_analyses
from inference.models import WorkerHeartbeat
from tests.factories import ModelVersionFactory, case_with_images
from tests.helpers import noise_png, stored_files, tmpfs_mounted

pytestmark = pytest.mark.django_db


@pytest.fixture
def otherwise_healthy():
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="w1@host", pid=1, started=now, last_seen=now)
    ModelVersionFactory.create()


def checks(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    return response.status_code, response.json()["checks"]


def test_the_queue_check_reports_the_backlog_and_fails_once_the_oldest_wait_is_too_long(
    client, otherwise_healthy
):
    case = case_with_images(noise_png(1), noise_png(2))
    case.images.update(queued=timezone.now() - timedelta(seconds=30))
    status, found = checks(client)
    assert status == HTTPStatus.OK, found
    queue = found["queue"]
    assert queue["ok"] and queue["images"] == 2 and 29 < queue["oldest_wait_s"] < 60
    assert queue["threshold_s"] == settings.ANALYSIS_OVERDUE_AFTER
    assert isinstance(queue["broker_messages"], int)

    late = timezone.now() - timedelta(seconds=settings.ANALYSIS_OVERDUE_AFTER + 60)
    first, _ = case.images.all()
    SmearImage.objects.filter(pk=first.pk).update(queued=late)
    status, found = checks(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert not found["queue"]["ok"] and "over the" in found["queue"]["detail"]

    case.images.update(status=SmearImage.Status.DONE)
    status, found = checks(client)
    assert found["queue"]["ok"] and found["queue"]["images"] == 0


def test_the_storage_check_writes_a_probe_and_leaves_nothing(client, otherwise_healthy, tmp_path):
    status, found = checks(client)
    assert status == HTTPStatus.OK, found
    storage = found["storage"]
    assert storage["ok"] and storage["writable"] and storage["free_mb"] > 0
    assert stored_files(tmp_path) == []


def test_a_read_only_media_disk_fails_the_storage_check(client, otherwise_healthy, tmp_path):
    with tmpfs_mounted(tmp_path / "media", size="4m") as media:
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True)
        status, found = checks(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert found["storage"]["ok"] is False and found["storage"]["writable"] is False
    assert "not writable" in found["storage"]["detail"]


def test_a_media_disk_short_of_space_fails_the_storage_check(
    client, otherwise_healthy, tmp_path, settings
):
    settings.STORAGE_MIN_FREE_MB = 8
    with tmpfs_mounted(tmp_path / "media", size="4m"):
        status, found = checks(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    storage = found["storage"]
    assert storage["writable"] and storage["free_mb"] <= 4 and storage["min_free_mb"] == 8
    assert "under the 8 MiB minimum" in storage["detail"]


def test_a_worker_silent_for_15_seconds_is_reported_gone(client, otherwise_healthy):
    assert settings.WORKER_STALE_AFTER == 15 and settings.WORKER_HEARTBEAT_INTERVAL == 5
    WorkerHeartbeat.objects.update(last_seen=timezone.now() - timedelta(seconds=16))
    status, found = checks(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert found["worker"] == {"ok": False, "detail": "no worker heartbeat in the last 15s"}


def test_only_a_worker_that_takes_analyses_counts_as_one():
    sweeper = Celery(set_as_current=False)
    sweeper.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    sweeper.amqp.queues.select([settings.CELERY_SWEEP_QUEUE])
    assert not consumes_analyses(sweeper)
    both = Celery(set_as_current=False)
    both.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    both.amqp.queues.select([settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_SWEEP_QUEUE])
    assert consumes_analyses(both)


def test_an_object_store_is_probed_for_writes_and_has_no_disk_to_fill(
    client, otherwise_healthy, object_store
):
    status, found = checks(client)
    assert status == HTTPStatus.OK, found
    assert found["storage"]["writable"] and found["storage"]["free_mb"] is None
    assert object_store.objects() == []  # the probe is gone
    object_store.relay.cut()
    status, found = checks(client)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert found["storage"] == {**found["storage"], "ok": False, "writable": False}


OUTSIDER = "203.0.113.9"  # an address from the documentation range: not this machine


def test_an_anonymous_outsider_learns_the_status_but_not_the_database_hosts_or_model(
    client, otherwise_healthy
):
    response = client.get("/healthz", REMOTE_ADDR=OUTSIDER)
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}
    assert "w1@host" not in response.content.decode()


def test_a_request_relayed_by_a_proxy_on_loopback_gets_no_details(client, otherwise_healthy):
    """A proxy on this machine connects from 127.0.0.1 on behalf of anyone."""
    response = client.get("/healthz", headers={"X-Forwarded-For": OUTSIDER})
    assert response.json() == {"status": "ok"}


def test_a_caller_on_this_machine_gets_the_details(client, otherwise_healthy):
    for address in ("127.0.0.1", "::1"):
        found = client.get("/healthz", REMOTE_ADDR=address).json()["checks"]
        assert found["worker"]["ok"] and "w1@host" in found["worker"]["detail"]


def test_an_unavailable_site_says_so_to_an_outsider_without_saying_why(client):
    response = client.get("/healthz", REMOTE_ADDR=OUTSIDER)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == {"status": "unavailable"}


def test_an_administrator_past_the_second_factor_gets_the_details_from_anywhere(
    client_for, admin_user, otherwise_healthy
):
    response = client_for(admin_user).get("/healthz", REMOTE_ADDR=OUTSIDER)
    assert response.json()["checks"]["database"]["detail"] in {"postgresql", "sqlite"}


def test_an_administrator_who_owes_the_second_factor_gets_no_details(
    client_for, admin_user, otherwise_healthy
):
    response = client_for(admin_user, verified=False).get("/healthz", REMOTE_ADDR=OUTSIDER)
    assert response.json() == {"status": "ok"}


def test_a_clinician_gets_no_details(client_for, alice, otherwise_healthy):
    response = client_for(alice).get("/healthz", REMOTE_ADDR=OUTSIDER)
    assert response.json() == {"status": "ok"}
