"""An analysis that cannot go on says why on the case page and in the API, and says nothing
is lost; one that takes too long says it is overdue."""

from html import unescape

from django.conf import settings
from django.utils import timezone

from cases.models import Case
from inference.models import WorkerHeartbeat
from leukweb.celery import app as celery_app
from tests.factories import ModelVersionFactory


def _notice(client, case) -> str:
    page = client.get(f"/cases/{case.pk}/").content.decode()
    status = client.get(f"/cases/{case.pk}/status/").json()["html"]
    assert ("data-stalled" in page) == ("data-stalled" in status)
    if "data-stalled" not in status:
        return ""
    return status.split("data-stalled>", 1)[1].split("</p>", 1)[0]


def _worker_alive():
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="w1@host", pid=1, started=now, last_seen=now)


def test_an_analysing_case_names_the_missing_part(client_for, alice, alice_case):
    client = client_for(alice)
    assert alice_case.status == Case.Status.SUBMITTED
    assert _notice(client, alice_case).startswith("No analysis worker is running")

    _worker_alive()
    assert _notice(client, alice_case).startswith("No model is deployed")

    ModelVersionFactory.create()
    assert _notice(client, alice_case) == ""


def test_a_dead_broker_is_named_first(client_for, alice, alice_case):
    _worker_alive()
    ModelVersionFactory.create()
    original = celery_app.conf.broker_url
    celery_app.conf["broker_url"] = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        notice = _notice(client_for(alice), alice_case)
    finally:
        celery_app.conf["broker_url"] = original
    assert notice.startswith("The analysis queue is unreachable: the images are saved")


def test_a_finished_case_shows_no_notice(client_for, alice, alice_case):
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.ANALYSED)
    assert _notice(client_for(alice), alice_case) == ""


def test_a_case_the_broker_refused_is_taken_by_the_next_sweep_not_ten_minutes_later(
    monkeypatch, alice, alice_patient, django_capture_on_commit_callbacks
):
    from cases import services
    from inference import dispatch
    from inference.services.sweep import stale_images_requeue
    from tests.helpers import as_uploads, image_bytes

    monkeypatch.setattr(dispatch, "case_analysis_request", lambda case_id: False)  # broker down
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_create(
            user=alice,
            patient=alice_patient,
            uploads=as_uploads(("a.png", image_bytes())),
            submit=True,
        )
    monkeypatch.undo()  # the broker is back
    celery_app.control.purge()
    try:
        assert stale_images_requeue(older_than_s=settings.INFERENCE_STALE_AFTER) == [case.pk]
    finally:
        celery_app.control.purge()


def test_a_waiting_case_says_how_many_images_are_ahead_of_it(client_for, alice, alice_patient):
    from cases import services
    from tests.helpers import as_uploads, image_bytes

    earlier = services.case_create(
        user=alice,
        patient=alice_patient,
        uploads=as_uploads(("a.png", image_bytes()), ("b.png", image_bytes(color=(1, 2, 3)))),
        submit=True,
    )
    later = services.case_create(
        user=alice,
        patient=alice_patient,
        uploads=as_uploads(("c.png", image_bytes(color=(9, 9, 9)))),
        submit=True,
    )
    assert earlier.status == later.status == Case.Status.SUBMITTED
    _worker_alive()
    ModelVersionFactory.create()  # nothing is missing: the case just waits its turn
    response = client_for(alice).get(f"/cases/{later.pk}/status/")
    assert "Waiting for 2 images of other cases ahead of this one." in response.json()["html"]
    first = client_for(alice).get(f"/cases/{earlier.pk}/status/").json()["html"]
    assert "data-queue-position" not in first


def test_a_case_being_analysed_says_how_many_of_its_images_are_done(client_for, alice, alice_case):
    from cases.models import SmearImage

    first = alice_case.images.first()
    assert first is not None
    SmearImage.objects.filter(pk=first.pk).update(status=SmearImage.Status.DONE)
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.ANALYSING)
    html = client_for(alice).get(f"/cases/{alice_case.pk}/status/").json()["html"]
    assert "1 of 2 images done" in html


def _api_case(client, case) -> dict:
    return client.get(f"/api/cases/{case.pk}/").json()


def test_the_api_gives_the_same_stalled_reason_as_the_page(client_for, alice, alice_case):
    client = client_for(alice)
    body = _api_case(client, alice_case)
    assert body["status"] == "submitted"
    assert body["stalled_reason"] == _notice(client, alice_case)
    assert body["stalled_reason"].startswith("No analysis worker is running")
    listed = client.get("/api/cases/").json()["results"][0]
    assert listed["stalled_reason"] == body["stalled_reason"]

    _worker_alive()
    ModelVersionFactory.create()
    body = _api_case(client, alice_case)
    assert body["stalled_reason"] == "" and body["overdue"] is False
    assert body["waiting_since"] is not None


def test_an_overdue_analysis_says_so_on_the_page_and_in_the_api(client_for, alice, alice_case):
    from datetime import timedelta

    _worker_alive()
    ModelVersionFactory.create()
    client = client_for(alice)
    late = timezone.now() - timedelta(seconds=settings.ANALYSIS_OVERDUE_AFTER + 5 * 60)
    alice_case.images.update(queued=late)
    html = client.get(f"/cases/{alice_case.pk}/status/").json()["html"]
    assert "data-overdue" in html
    overdue = unescape(html.split("data-overdue>", 1)[1].split("</p>", 1)[0])
    assert overdue.startswith("The analysis is overdue: its images have waited 10 min")
    body = _api_case(client, alice_case)
    assert body["overdue"] is True and body["stalled_reason"] == overdue


def test_a_finished_case_says_nothing_about_waiting_in_the_api(client_for, alice, alice_case):
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.ANALYSED)
    body = _api_case(client_for(alice), alice_case)
    assert (body["stalled_reason"], body["overdue"], body["waiting_since"]) == ("", False, None)
