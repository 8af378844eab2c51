"""The analysis task run in this process (apply): the same code a worker runs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cases.models import Case, SmearImage
from inference.models import CaseResult, ModelVersion, Prediction
from inference.services.registry import (
    model_version_deploy,
    model_version_import,
    model_version_set_shadow,
)
from inference.services.sweep import stale_images_requeue
from inference.tasks import analyse_case
from leukweb.celery import app as celery_app
from tests.factories import SmearImageFactory, case_with_images
from tests.helpers import noise_png

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def deployed(artifacts):
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="test")
    return version


def run(case) -> dict:
    return analyse_case.apply(args=(case.pk,)).get()


def test_a_case_gets_one_prediction_per_image_and_a_result(deployed):
    case = case_with_images(noise_png(1), noise_png(2), noise_png(3))
    outcome = run(case)
    assert outcome["predicted"] == 3 and outcome["model_version"] == "tiny v1"
    predictions = Prediction.objects.filter(image__case=case)
    assert {p.model_version for p in predictions} == {deployed}
    first = predictions.first()
    assert first is not None
    assert set(first.probabilities) == set(deployed.classes)
    assert sum(first.probabilities.values()) == pytest.approx(1.0)
    assert first.confidence == max(first.probabilities.values())
    assert first.inference_ms > 0 and first.worker_host
    assert set(case.images.values_list("status", flat=True)) == {"done"}
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSED
    result = CaseResult.objects.get(case=case)
    assert result.primary and result.images_count == 3 and result.model_version == deployed
    mean = sum(p.probabilities[result.label] for p in predictions) / 3
    assert result.confidence == pytest.approx(mean)


def test_running_the_task_twice_stores_one_prediction_per_image(deployed):
    case = case_with_images(noise_png(1), noise_png(2))
    run(case)
    stored = list(Prediction.objects.values_list("pk", "confidence"))
    assert run(case)["note"] == "nothing to analyse"
    assert list(Prediction.objects.values_list("pk", "confidence")) == stored


def test_an_undecodable_image_fails_with_a_reason_and_the_others_are_analysed(deployed):
    case = case_with_images(noise_png(1))
    bad = SmearImageFactory.create(
        case=case, data=b"\x89PNG\r\n\x1a\n this is not really a picture"
    )
    outcome = run(case)
    assert (outcome["predicted"], outcome["failed"]) == (1, 1)
    bad.refresh_from_db()
    assert bad.status == SmearImage.Status.FAILED
    assert "could not be read as an image" in bad.failure_reason
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSED
    assert case.failure_reason == "1 of 2 images could not be analysed."


def test_a_case_whose_only_image_is_unreadable_fails_with_the_reason(deployed):
    case = case_with_images(b"GIF89a truncated")
    run(case)
    case.refresh_from_db()
    assert case.status == Case.Status.FAILED
    assert "could not be read as an image" in case.failure_reason
    assert not Prediction.objects.exists() and not CaseResult.objects.exists()


def test_a_missing_model_artifact_fails_the_images_with_a_reason(deployed, settings, tmp_path):
    from django.core.files.storage import storages

    from inference.artifacts import artifact_delete, cache_root

    case = case_with_images(noise_png(1))
    # A version that this process has never loaded, whose files are gone everywhere.
    ModelVersion.objects.filter(pk=deployed.pk).update(
        content_hash="sha256:" + "e" * 64, artifact="gone"
    )
    artifact_delete("gone")
    assert not (cache_root() / ("e" * 64)).exists() and not storages["models"].exists("gone")
    run(case)
    image = case.images.get()
    assert image.status == SmearImage.Status.FAILED
    assert "could not be loaded" in image.failure_reason
    case.refresh_from_db()
    assert case.status == Case.Status.FAILED


def test_the_shadow_model_predicts_too_and_its_result_is_not_primary(deployed, artifacts):
    shadow = model_version_import(source=artifacts["v2"])
    model_version_set_shadow(model_version=shadow, actor=None, reason="compare")
    case = case_with_images(noise_png(1), noise_png(2))
    assert run(case)["shadow_predicted"] == 2
    assert Prediction.objects.filter(model_version=shadow).count() == 2
    primary = CaseResult.objects.get(case=case, primary=True)
    assert primary.model_version == deployed
    assert not CaseResult.objects.get(case=case, model_version=shadow).primary


def test_a_new_deploy_is_used_by_the_next_task_and_earlier_predictions_stay(deployed, artifacts):
    first = case_with_images(noise_png(1))
    run(first)
    before = Prediction.objects.get(image__case=first)
    v2 = model_version_import(source=artifacts["v2"])
    model_version_deploy(model_version=v2, actor=None, reason="better")
    second = case_with_images(noise_png(2))
    run(second)
    assert Prediction.objects.get(image__case=second).model_version == v2
    again = Prediction.objects.get(pk=before.pk)
    assert (again.model_version, again.probabilities) == (deployed, before.probabilities)


def test_no_deployed_model_leaves_images_pending_for_the_sweep(db):
    case = case_with_images(noise_png(1))
    assert run(case)["note"] == "no model deployed"
    assert case.images.get().status == SmearImage.Status.PENDING


def test_the_sweep_queues_a_stale_image_again(deployed):
    celery_app.control.purge()
    stale = case_with_images(noise_png(1))
    fresh = case_with_images(noise_png(2))
    SmearImage.objects.filter(case=stale).update(status_changed=timezone.now() - timedelta(hours=1))
    assert stale_images_requeue(older_than_s=600) == [stale.pk]
    # The message really is on the broker: take it off and run what it asks for.
    with celery_app.connection_for_read() as conn:
        message = conn.SimpleQueue(celery_app.conf.task_default_queue).get(timeout=5)
        message.ack()
    args, kwargs, _ = message.decode()
    assert message.headers["task"] == "inference.analyse_case" and args == [stale.pk]
    analyse_case.apply(args=args, kwargs=kwargs).get()
    assert stale.images.get().status == SmearImage.Status.DONE
    assert fresh.images.get().status == SmearImage.Status.PENDING
    # The clock restarted: the next sweep does not queue the same image again.
    assert stale_images_requeue(older_than_s=600) == []


def test_heatmaps_are_queued_for_a_heatmap_worker_once_the_predictions_are_stored(
    deployed, heatmaps_queued, django_capture_on_commit_callbacks
):
    case = case_with_images(noise_png(1), noise_png(2))
    with django_capture_on_commit_callbacks() as callbacks:
        run(case)
    assert heatmaps_queued == []  # not before the commit
    for callback in callbacks:
        callback()
    assert heatmaps_queued == [(case.pk, deployed.pk)]
    assert set(Prediction.objects.filter(image__case=case).values_list("heatmap", flat=True)) == {
        ""
    }


def test_no_heatmaps_are_queued_when_they_are_switched_off(deployed, settings, heatmaps_queued):
    settings.INFERENCE_HEATMAPS = False
    run(case_with_images(noise_png(1)))
    assert heatmaps_queued == []


def test_a_draft_is_neither_swept_nor_analysed_until_it_is_submitted(deployed):
    celery_app.control.purge()
    draft = case_with_images(noise_png(1), status=Case.Status.DRAFT)
    SmearImage.objects.filter(case=draft).update(status_changed=timezone.now() - timedelta(hours=1))
    assert stale_images_requeue(older_than_s=600) == []
    assert run(draft)["note"] == "nothing to analyse"
    draft.refresh_from_db()
    assert draft.status == Case.Status.DRAFT
    assert draft.images.get().status == SmearImage.Status.PENDING
    assert not Prediction.objects.filter(image__case=draft).exists()


def test_workers_and_the_sweep_never_claim_a_withdrawn_image(deployed):
    celery_app.control.purge()
    case = case_with_images(noise_png(1), noise_png(2))
    withdrawn, kept = case.images.all()
    # As cases.services leaves it: withdrawn while the case was a draft, still PENDING.
    SmearImage.objects.filter(pk=withdrawn.pk).update(withdrawn=timezone.now())
    assert run(case)["predicted"] == 1
    assert list(Prediction.objects.values_list("image", flat=True)) == [kept.pk]
    case.refresh_from_db()
    # The withdrawn image, still pending, does not keep the case waiting.
    assert case.status == Case.Status.ANALYSED
    assert CaseResult.objects.get(case=case).images_count == 1
    assert SmearImage.all_objects.get(pk=withdrawn.pk).status == SmearImage.Status.PENDING
    SmearImage.all_objects.filter(pk=withdrawn.pk).update(
        status_changed=timezone.now() - timedelta(hours=1)
    )
    assert stale_images_requeue(older_than_s=600) == []


def test_a_case_shows_its_images_finishing_chunk_by_chunk(deployed, monkeypatch):
    from inference.services import analysis

    case = case_with_images(*(noise_png(seed) for seed in range(5)))
    seen: list[tuple[int, str]] = []
    store = analysis._predictions_store

    def store_and_look(*args, **kwargs) -> None:
        store(*args, **kwargs)
        case.refresh_from_db()
        seen.append((case.images.filter(status=SmearImage.Status.DONE).count(), case.status))

    monkeypatch.setattr(analysis, "ANALYSIS_CHUNK", 2)
    monkeypatch.setattr(analysis, "_predictions_store", store_and_look)
    assert run(case)["predicted"] == 5
    assert seen == [(2, "analysing"), (4, "analysing"), (5, "analysed")]
    assert CaseResult.objects.get(case=case).images_count == 5
