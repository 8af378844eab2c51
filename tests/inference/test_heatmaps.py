"""The heatmap task: Grad-CAM overlays made after the predictions, at most one each."""

import pytest
from PIL import Image

from inference.models import Prediction
from inference.services import heatmaps
from inference.services.registry import model_version_deploy, model_version_import
from inference.tasks import analyse_case, make_heatmaps
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


def test_a_task_that_loses_the_race_deletes_its_own_overlay(analysed, tmp_path, monkeypatch):
    case, version = analysed
    # This delivery read the predictions as missing, then another attached them first.
    stale = heatmaps._missing(case.pk, version)
    make_heatmaps.apply(args=(case.pk, version.pk)).get()
    winners, files = heatmap_names(case), sorted(stored_files(tmp_path))
    monkeypatch.setattr(heatmaps, "_missing", lambda case_id, version: stale)
    outcome = heatmaps.case_heatmaps_make(case_id=case.pk, model_version_id=version.pk)
    assert outcome.made == 0
    assert heatmap_names(case) == winners
    assert sorted(stored_files(tmp_path)) == files


def test_an_image_gone_from_storage_is_skipped_and_the_others_get_theirs(analysed):
    case, version = analysed
    gone = case.images.order_by("pk").first()
    gone.file.storage.delete(gone.file.name)
    outcome = make_heatmaps.apply(args=(case.pk, version.pk)).get()
    assert (outcome["made"], outcome["skipped"]) == (1, 1)
    assert Prediction.objects.get(image=gone).heatmap.name == ""


def test_nothing_is_made_when_heatmaps_are_switched_off(analysed, settings):
    case, version = analysed
    settings.INFERENCE_HEATMAPS = False
    assert make_heatmaps.apply(args=(case.pk, version.pk)).get()["made"] == 0
    assert set(heatmap_names(case)) == {""}
