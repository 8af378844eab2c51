"""The heatmap task: Grad-CAM overlays made after the predictions, at most one each, each
heatmap pending until made or impossible with its reason, and no file left without its row."""

import os
import time
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import OperationalError
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image

from inference import dispatch
from inference.models import HeatmapState, Prediction
from inference.services import heatmaps, sweep
from inference.services.registry import model_version_deploy, model_version_import
from inference.tasks import analyse_case, delete_orphan_heatmaps, make_heatmaps
from runtime.artifact import ArtifactError
from tests.factories import case_with_images
from tests.helpers import noise_png, smear_bytes, stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def analysed(artifacts):
    """A case of two images whose predictions are stored, their heatmaps still pending."""
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="test")
    case = case_with_images(smear_bytes(0), noise_png(2))
    analyse_case.apply(args=(case.pk,)).get()
    return case, version


def heatmap_names(case) -> list[str]:
    return list(Prediction.objects.filter(image__case=case).values_list("heatmap", flat=True))


def test_the_task_attaches_an_overlay_at_the_uploads_own_size_to_each_prediction(analysed):
    case, version = analysed
    outcome = make_heatmaps.apply(args=(case.pk, version.pk)).get()
    assert outcome["made"] == 2
    states = set(Prediction.objects.values_list("heatmap_state", "heatmap_claimed_by"))
    assert states == {(HeatmapState.MADE, "")}
    for prediction in Prediction.objects.filter(image__case=case).select_related("image"):
        assert (prediction.heatmap.name or "").startswith("heatmaps/")
        with prediction.heatmap.open("rb") as fh, Image.open(fh) as overlay:
            size = overlay.size
        with prediction.image.file.open("rb") as fh, Image.open(fh) as upload:
            assert size == upload.size


def test_a_redelivered_task_makes_nothing_twice_and_leaves_no_file_behind(analysed, tmp_path):
    case, version = analysed
    make_heatmaps.apply(args=(case.pk, version.pk)).get()
    first = heatmap_names(case)
    files = sorted(stored_files(tmp_path))
    again = make_heatmaps.apply(args=(case.pk, version.pk)).get()
    assert again["made"] == 0 and again["note"] == "nothing missing"
    assert heatmap_names(case) == first
    assert sorted(stored_files(tmp_path)) == files


def test_an_image_gone_from_storage_makes_its_heatmap_impossible_and_the_others_are_made(
    analysed,
):
    case, version = analysed
    gone = case.images.order_by("pk").first()
    gone.file.storage.delete(gone.file.name)
    outcome = make_heatmaps.apply(args=(case.pk, version.pk)).get()
    assert (outcome["made"], outcome["impossible"]) == (1, 1)
    prediction = Prediction.objects.get(image=gone)
    assert (prediction.heatmap.name, prediction.heatmap_state) == ("", HeatmapState.IMPOSSIBLE)
    assert prediction.heatmap_reason == heatmaps.IMAGE_MISSING


def test_with_heatmaps_switched_off_none_is_pending_and_the_reason_is_kept(analysed, settings):
    case, version = analysed
    settings.INFERENCE_HEATMAPS = False
    assert make_heatmaps.apply(args=(case.pk, version.pk)).get()["impossible"] == 2
    assert set(Prediction.objects.values_list("heatmap", "heatmap_state", "heatmap_reason")) == {
        ("", HeatmapState.IMPOSSIBLE, heatmaps.HEATMAPS_OFF)
    }
    later = case_with_images(smear_bytes(3), team="Team B")
    analyse_case.apply(args=(later.pk,)).get()
    assert set(
        Prediction.objects.filter(image__case=later).values_list("heatmap_state", flat=True)
    ) == {HeatmapState.IMPOSSIBLE}


def test_a_model_that_cannot_give_gradients_makes_the_heatmaps_impossible(analysed, monkeypatch):
    case, version = analysed

    def no_keras_model(version):
        raise ArtifactError("the artifact has no Keras model")

    monkeypatch.setattr(heatmaps, "heatmap_model_for", no_keras_model)
    assert make_heatmaps.apply(args=(case.pk, version.pk)).get()["impossible"] == 2
    reasons = set(Prediction.objects.values_list("heatmap_reason", flat=True))
    assert reasons == {heatmaps.MODEL_CANNOT.format(detail="the artifact has no Keras model")}


@pytest.fixture
def sent(monkeypatch) -> list[tuple[int, int]]:
    """The heatmap messages queued, instead of sending them to the broker."""
    messages: list[tuple[int, int]] = []

    def request(case_id: int, model_version_id: int) -> bool:
        messages.append((case_id, model_version_id))
        return True

    monkeypatch.setattr(dispatch, "case_heatmaps_request", request)
    return messages


def test_a_message_makes_a_few_overlays_and_queues_the_rest_of_its_case(artifacts, settings, sent):
    """Short tasks: a worker told to stop finishes its task within the grace period."""
    settings.INFERENCE_HEATMAP_BATCH = 2
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="test")
    case = case_with_images(*(smear_bytes(i) for i in range(5)))
    analyse_case.apply(args=(case.pk,)).get()
    sent.clear()
    assert make_heatmaps.apply(args=(case.pk, version.pk)).get()["made"] == 2
    assert sent == [(case.pk, version.pk)]
    while sent:
        make_heatmaps.apply(args=sent.pop()).get()
    assert set(Prediction.objects.values_list("heatmap_state", flat=True)) == {HeatmapState.MADE}


def test_a_run_that_lost_its_claim_deletes_its_overlay_and_attaches_nothing(analysed, tmp_path):
    case, version = analysed
    slow = heatmaps.heatmaps_claim(case_id=case.pk, version=version, holder="slow@host:1")[0]
    Prediction.objects.update(heatmap_lease_expires=timezone.now() - timedelta(seconds=1))
    make_heatmaps.apply(args=(case.pk, version.pk)).get()  # takes the lapsed claims over
    winners, files = heatmap_names(case), sorted(stored_files(tmp_path))
    assert heatmaps._overlay_attach(slow, b"\x89PNG-late", "slow@host:1") == 0
    assert heatmap_names(case) == winners
    assert sorted(stored_files(tmp_path)) == files


def test_a_database_failing_at_the_attach_leaves_no_file_and_the_claim_handed_back(
    analysed, tmp_path, monkeypatch
):
    case, version = analysed
    before = sorted(stored_files(tmp_path))
    real_update = QuerySet.update

    def update(queryset, **fields):
        if fields.get("heatmap_state") == HeatmapState.MADE:
            raise OperationalError("server closed the connection unexpectedly")
        return real_update(queryset, **fields)

    monkeypatch.setattr(QuerySet, "update", update)
    with pytest.raises(OperationalError):
        heatmaps.case_heatmaps_make(case_id=case.pk, model_version_id=version.pk, holder="me:1")
    monkeypatch.undo()
    assert sorted(stored_files(tmp_path)) == before
    assert set(Prediction.objects.values_list("heatmap_state", "heatmap_claimed_by")) == {
        (HeatmapState.PENDING, "")
    }


def test_the_sweep_deletes_a_dead_runs_file_and_queues_its_heatmaps_again(analysed, tmp_path, sent):
    case, version = analysed
    claimed = heatmaps.heatmaps_claim(case_id=case.pk, version=version, holder="dead@host:1")
    # The run wrote its first overlay and was killed before attaching it.
    draft = heatmaps._storage().save(f"heatmaps/{claimed[0].image_id}-dead.png", ContentFile(b"x"))
    Prediction.objects.filter(pk=claimed[0].pk).update(
        heatmap_draft=draft, heatmap_lease_expires=timezone.now() - timedelta(seconds=1)
    )
    Prediction.objects.update(heatmap_lease_expires=timezone.now() - timedelta(seconds=1))
    sent.clear()
    sweep.stale_images_requeue(older_than_s=600)
    assert sent == [(case.pk, version.pk)]
    assert not heatmaps._storage().exists(draft)
    make_heatmaps.apply(args=sent.pop()).get()
    assert set(Prediction.objects.values_list("heatmap_state", flat=True)) == {HeatmapState.MADE}
    referenced = {f"media/{name}" for name in heatmap_names(case)}
    on_disk = {p.relative_to(tmp_path).as_posix() for p in stored_files(tmp_path)}
    assert {name for name in on_disk if "heatmaps/" in name} == referenced


def test_the_sweep_queues_pending_heatmaps_whose_message_was_lost_but_not_behind_a_backlog(
    analysed, sent, settings, monkeypatch
):
    case, version = analysed
    Prediction.objects.update(heatmap_changed=timezone.now() - timedelta(seconds=45))
    sent.clear()
    monkeypatch.setattr(dispatch, "heatmap_queue_depth", lambda: 7)  # a backlog: wait
    heatmaps.heatmaps_requeue(older_than_s=600)
    assert sent == []
    monkeypatch.setattr(dispatch, "heatmap_queue_depth", lambda: 0)  # no message is coming
    heatmaps.heatmaps_requeue(older_than_s=600)
    assert sent == [(case.pk, version.pk)]
    heatmaps.heatmaps_requeue(older_than_s=600)  # its clock restarted: not queued twice
    assert sent == [(case.pk, version.pk)]


def test_overlay_files_that_no_prediction_names_are_deleted_once_old(analysed, tmp_path):
    case, version = analysed
    make_heatmaps.apply(args=(case.pk, version.pk)).get()
    storage = heatmaps._storage()
    draft = storage.save("heatmaps/draft-of-a-live-run.png", ContentFile(b"x"))
    first = Prediction.objects.filter(image__case=case).values_list("pk", flat=True)[0]
    Prediction.objects.filter(pk=first).update(heatmap_draft=draft)
    old_orphan = storage.save("heatmaps/left-by-a-dead-run.png", ContentFile(b"x"))
    new_orphan = storage.save("heatmaps/being-attached-now.png", ContentFile(b"x"))
    an_hour_ago = time.time() - 3700
    for name in (draft, old_orphan, *heatmap_names(case)):
        os.utime(storage.path(name), (an_hour_ago, an_hour_ago))

    assert delete_orphan_heatmaps.apply(kwargs={"older_than_s": 3600}).get() == [old_orphan]
    assert not storage.exists(old_orphan)
    assert all(storage.exists(name) for name in (draft, new_orphan, *heatmap_names(case)))
