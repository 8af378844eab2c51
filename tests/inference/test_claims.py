"""Claims with leases and the sweep: a live worker's claim is left alone, a dead one's is
handed on within seconds, and a lost message is noticed without waiting ten minutes."""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cases.models import Case, SmearImage
from inference import dispatch
from inference.dispatch import analysis_queue_depth, case_analysis_request
from inference.models import ModelEvaluation, Prediction
from inference.services import claims, evaluation, sweep
from inference.services.registry import model_version_deploy, model_version_import
from inference.tasks import analyse_case
from leukweb.celery import app as celery_app
from tests.factories import ModelVersionFactory, case_with_images
from tests.helpers import noise_png

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def deployed(artifacts):
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="test")
    return version


def run(case) -> dict:
    return analyse_case.apply(args=(case.pk,)).get()


def held(case, *, by: str, lapse_in: float) -> None:
    """As a worker leaves the case's images while it analyses them."""
    case.images.update(
        status=SmearImage.Status.ANALYSING,
        claimed_by=by,
        lease_expires=timezone.now() + timedelta(seconds=lapse_in),
    )


def test_images_a_live_worker_holds_are_left_to_it(deployed):
    case = case_with_images(noise_png(1), noise_png(2))
    held(case, by="other@host:1", lapse_in=20)
    assert run(case)["note"] == "nothing to analyse"
    assert not Prediction.objects.exists()
    assert set(case.images.values_list("claimed_by", flat=True)) == {"other@host:1"}


def test_images_whose_claim_lapsed_are_taken_and_finished(deployed):
    case = case_with_images(noise_png(1), noise_png(2))
    held(case, by="dead@host:1", lapse_in=-1)
    assert run(case)["predicted"] == 2
    assert set(case.images.values_list("status", "claimed_by", "lease_expires")) == {
        (SmearImage.Status.DONE, "", None)
    }


def test_a_claim_holds_for_the_lease_while_the_analysis_runs(deployed, settings, monkeypatch):
    from inference.services import analysis

    case = case_with_images(noise_png(1))
    seen: dict[str, Any] = {}
    classify = analysis._classify

    def classify_and_look(*args):
        seen.update(case.images.values("claimed_by", "lease_expires", "status").get())
        return classify(*args)

    monkeypatch.setattr(analysis, "_classify", classify_and_look)
    run(case)
    assert seen["status"] == SmearImage.Status.ANALYSING and ":" in seen["claimed_by"]
    lease = (seen["lease_expires"] - timezone.now()).total_seconds()
    assert 0 < lease <= settings.INFERENCE_CLAIM_LEASE


@pytest.mark.django_db(transaction=True)
def test_the_worker_renews_its_claims_while_it_works_and_stops_when_done(settings):
    settings.INFERENCE_CLAIM_LEASE = 2
    case = case_with_images(noise_png(1))
    case.images.update(claimed_by="me", lease_expires=timezone.now() + timedelta(seconds=2))
    pks = list(case.images.values_list("pk", flat=True))

    def lease_left() -> float:
        lease = case.images.get().lease_expires
        assert lease is not None
        return (lease - timezone.now()).total_seconds()

    with claims.lease_kept(SmearImage, pks, "me"):
        time.sleep(3)  # past the first lease: renewed every half second meanwhile
        assert lease_left() > 0
    time.sleep(2.5)
    assert lease_left() < 0


def test_the_sweep_hands_on_a_dead_workers_images_at_once(queued, monkeypatch):
    monkeypatch.setattr(dispatch, "analysis_queue_depth", lambda: 5)  # a backlog
    case = case_with_images(noise_png(1))
    held(case, by="dead@host:1", lapse_in=-1)
    alive = case_with_images(noise_png(2), team="Team B")
    held(alive, by="live@host:2", lapse_in=20)
    assert sweep.stale_images_requeue(older_than_s=600) == [case.pk]
    assert queued == [case.pk]
    image = case.images.get()
    assert (image.status, image.claimed_by, image.lease_expires) == ("pending", "", None)
    assert alive.images.get().status == SmearImage.Status.ANALYSING
    # Queued again once, not at every sweep while the message makes its way.
    assert sweep.stale_images_requeue(older_than_s=600) == []


def test_lost_messages_are_noticed_when_nothing_waits_in_the_queue(queued, monkeypatch, settings):
    case = case_with_images(noise_png(1))
    recent = timezone.now() - timedelta(seconds=settings.INFERENCE_REQUEUE_GRACE + 1)
    case.images.update(status_changed=recent)
    monkeypatch.setattr(dispatch, "analysis_queue_depth", lambda: 3)
    assert sweep.stale_images_requeue(older_than_s=600) == []  # its message may be waiting
    monkeypatch.setattr(dispatch, "analysis_queue_depth", lambda: None)
    assert sweep.stale_images_requeue(older_than_s=600) == []  # the broker is unreachable
    monkeypatch.setattr(dispatch, "analysis_queue_depth", lambda: 0)
    assert sweep.stale_images_requeue(older_than_s=600) == [case.pk]
    case.images.update(status_changed=timezone.now())
    assert sweep.stale_images_requeue(older_than_s=600) == []  # within the grace


def test_the_queue_depth_is_read_from_the_real_broker():
    celery_app.control.purge()
    try:
        assert analysis_queue_depth() == 0
        assert case_analysis_request(1) and case_analysis_request(2)
        assert analysis_queue_depth() == 2
    finally:
        celery_app.control.purge()


def test_a_second_delivery_of_an_evaluation_leaves_a_live_run_alone(monkeypatch):
    version = ModelVersionFactory.create()
    row = ModelEvaluation.objects.create(model_version=version, dataset="/nowhere")
    assert claims.evaluation_claim(evaluation_id=row.pk, holder="first@host:1")
    ran = []
    monkeypatch.setattr(evaluation, "_evaluation_run", lambda pk: ran.append(pk))
    evaluation.model_evaluation_run(evaluation_id=row.pk, holder="second@host:2")
    assert ran == []
    ModelEvaluation.objects.filter(pk=row.pk).update(
        lease_expires=timezone.now() - timedelta(seconds=1)
    )
    evaluation.model_evaluation_run(evaluation_id=row.pk, holder="second@host:2")
    assert ran == [row.pk]


def test_the_sweep_queues_again_an_evaluation_whose_worker_died(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(dispatch, "model_evaluation_send", sent.append)
    monkeypatch.setattr(dispatch, "analysis_queue_depth", lambda: 0)
    version = ModelVersionFactory.create()
    dead = ModelEvaluation.objects.create(
        model_version=version,
        dataset="/d",
        claimed_by="dead@host:1",
        lease_expires=timezone.now() - timedelta(seconds=1),
    )
    ModelEvaluation.objects.create(
        model_version=version,
        dataset="/d",
        claimed_by="live@host:1",
        lease_expires=timezone.now() + timedelta(seconds=20),
    )
    sweep.stale_images_requeue(older_than_s=600)
    assert sent == [dead.pk]
    dead.refresh_from_db()
    assert (dead.claimed_by, dead.lease_expires) == ("", None)


def test_the_sweep_skips_drafts_and_cases_a_worker_finished(queued, monkeypatch):
    monkeypatch.setattr(dispatch, "analysis_queue_depth", lambda: 0)
    case_with_images(noise_png(1), status=Case.Status.DRAFT)
    done = case_with_images(noise_png(2), team="Team B", status=Case.Status.ANALYSED)
    done.images.update(status=SmearImage.Status.DONE)
    SmearImage.objects.update(status_changed=timezone.now() - timedelta(hours=1))
    assert sweep.stale_images_requeue(older_than_s=600) == []


def test_a_run_that_fails_hands_its_images_back_for_the_retry(deployed, monkeypatch):
    from inference.services import analysis

    case = case_with_images(noise_png(1))

    def store_down(image):
        raise ConnectionError("the object store could not read it")

    monkeypatch.setattr(analysis, "_upload_bytes", store_down)
    with pytest.raises(ConnectionError):
        analysis.case_analyse(case_id=case.pk, worker_host="w@h", holder="w@h:1")
    image = case.images.get()
    assert (image.status, image.claimed_by, image.lease_expires) == ("pending", "", None)
    monkeypatch.undo()
    assert run(case)["predicted"] == 1


def test_a_retry_in_the_same_process_takes_back_its_own_claim(deployed):
    case = case_with_images(noise_png(1))
    held(case, by="w@h:1", lapse_in=20)
    from inference.services import analysis

    outcome = analysis.case_analyse(case_id=case.pk, worker_host="w@h", holder="w@h:1")
    assert outcome.predicted == 1


def test_the_sweep_goes_to_its_own_queue_and_analyses_to_the_default(settings):
    router = celery_app.amqp.router
    assert router.route({}, "inference.sweep_stale_images")["queue"].name == (
        settings.CELERY_SWEEP_QUEUE
    )
    assert router.route({}, "inference.analyse_case")["queue"].name == (
        settings.CELERY_TASK_DEFAULT_QUEUE
    )
