"""Analysis with uploads and model artifacts in an object store (a real S3-protocol server
behind a relay the tests cut): the worker's local copy of an artifact, a missing object,
and a store that is down while a case is analysed."""

import numpy as np
import pytest

import runtime.heatmaps
import runtime.predictor
from cases.models import Case, SmearImage
from inference.artifacts import (
    cache_root,
    heatmap_model_for,
    local_artifact,
    onnx_path_files,
    predictor_for,
)
from inference.models import Prediction
from inference.services.analysis import IMAGE_MISSING, case_analyse
from inference.services.heatmaps import case_heatmaps_make
from inference.services.registry import model_version_deploy, model_version_import
from inference.tasks import TRANSIENT_ERRORS
from leukweb.storage import ObjectStoreError
from runtime.artifact import sha256_file
from tests.factories import case_with_images
from tests.helpers import noise_png

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("object_store")]


@pytest.fixture
def local_cache(settings, tmp_path):
    """This test's own VAR_DIR, so the worker's copy of an artifact starts empty."""
    settings.VAR_DIR = tmp_path / "worker-var"
    return settings.VAR_DIR


@pytest.fixture
def deployed(artifact_copy):
    source = artifact_copy("v1")
    # Whatever an artifact folder holds travels with it (an ONNX graph, a verification
    # batch, files a later version of the format adds), at any depth.
    (source / "extra").mkdir()
    np.save(source / "extra" / "verification.npy", np.arange(6))
    version = model_version_import(source=source)
    model_version_deploy(model_version=version, actor=None, reason="test")
    return version


def test_an_imported_artifact_lives_in_the_models_prefix(deployed, object_store, artifacts):
    stored = {k for k in object_store.objects() if k.startswith(f"models/{deployed.artifact}/")}
    expected = {p.relative_to(artifacts["v1"]).as_posix() for p in artifacts["v1"].rglob("*")}
    expected = {f for f in expected if (artifacts["v1"] / f).is_file()}
    assert {k.removeprefix(f"models/{deployed.artifact}/") for k in stored} == {
        *expected,
        "extra/verification.npy",
    }


def test_a_worker_copies_every_file_of_the_artifact_once_keyed_by_content_hash(
    deployed, object_store, local_cache
):
    folder = local_artifact(deployed)

    assert folder == cache_root() / deployed.content_hash.removeprefix("sha256:")
    assert folder.is_relative_to(local_cache)
    assert np.load(folder / "extra" / "verification.npy").tolist() == list(range(6))
    assert (folder / "manifest.json").is_file() and (folder / "model.keras").is_file()
    # The copy is kept: the store is not needed again for this version.
    object_store.relay.cut()
    assert local_artifact(deployed) == folder


@pytest.fixture
def fresh_process(monkeypatch):
    """This process has loaded no model yet, as a worker that just started."""
    monkeypatch.setattr(runtime.predictor, "_cache", type(runtime.predictor._cache)())
    monkeypatch.setattr(runtime.heatmaps, "_cache", type(runtime.heatmaps._cache)())


def fetched(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_an_analysis_worker_fetches_only_the_files_of_the_onnx_path(
    deployed, object_store, local_cache, fresh_process
):
    manifest = deployed.manifest
    predictor = predictor_for(deployed)

    (folder,) = cache_root().iterdir()
    assert folder.name == deployed.content_hash.removeprefix("sha256:") + "-onnx"
    # The "extra" folder and the Keras model stay in the store.
    assert fetched(folder) == {
        "manifest.json",
        manifest["onnx"]["file"],
        manifest["onnx"]["verification"]["file"],
    }
    # Verified: the graph's hash, and its self-test against the Keras outputs it carries.
    assert predictor.manifest.content_hash == deployed.content_hash
    object_store.relay.cut()
    assert local_artifact(deployed, role="analysis") == folder


def test_a_heatmap_worker_fetches_the_keras_model_and_its_copy_serves_analysis_too(
    deployed, object_store, local_cache, fresh_process
):
    heatmap_model_for(deployed)
    full = cache_root() / deployed.content_hash.removeprefix("sha256:")
    assert (full / "model.keras").is_file()

    object_store.relay.cut()
    predictor_for(deployed)  # nothing more to fetch: the whole artifact is here
    assert local_artifact(deployed, role="analysis") == full
    assert [p.name for p in cache_root().iterdir()] == [full.name]


def test_a_damaged_analysis_copy_is_fetched_again(deployed, local_cache, fresh_process):
    folder = local_artifact(deployed, role="analysis")
    graph = folder / deployed.manifest["onnx"]["file"]
    graph.write_bytes(graph.read_bytes()[:-10])

    predictor_for(deployed)

    assert "model.keras" not in fetched(folder)
    assert sha256_file(graph) == deployed.manifest["onnx"]["sha256"]


def test_the_onnx_path_also_needs_the_guard_and_an_accepted_int8_graph():
    manifest = {
        "onnx": {"file": "model.onnx", "verification": {"file": "verification.npz"}},
        "int8": {"status": "accepted", "file": "model.int8.onnx"},
        "ood": {"file": "ood.npz"},
    }
    assert onnx_path_files(manifest) == {
        "manifest.json",
        "model.onnx",
        "verification.npz",
        "model.int8.onnx",
        "ood.npz",
    }
    refused = {**manifest, "int8": {"status": "refused", "reason": "too inaccurate"}, "ood": None}
    assert onnx_path_files(refused) == {"manifest.json", "model.onnx", "verification.npz"}


def test_an_unknown_role_is_refused(deployed):
    with pytest.raises(ValueError, match="unknown artifact role"):
        local_artifact(deployed, role="web")


def test_an_artifact_that_cannot_be_fetched_leaves_no_partial_copy(
    deployed, object_store, local_cache
):
    object_store.relay.cut()
    with pytest.raises(ObjectStoreError):
        local_artifact(deployed)
    assert list(cache_root().glob("*")) == []
    object_store.relay.restore()
    assert (local_artifact(deployed) / "manifest.json").is_file()


def test_a_missing_upload_fails_that_image_with_a_reason_and_nothing_else(deployed, object_store):
    case = case_with_images(noise_png(1), noise_png(2))
    gone, kept = case.images.order_by("pk")
    object_store.client().delete_object(Bucket=object_store.bucket, Key=f"media/{gone.file.name}")

    outcome = case_analyse(case_id=case.pk, worker_host="w1")

    assert (outcome.predicted, outcome.failed) == (1, 1)
    gone.refresh_from_db()
    kept.refresh_from_db()
    assert (gone.status, gone.failure_reason) == (SmearImage.Status.FAILED, IMAGE_MISSING)
    assert kept.status == SmearImage.Status.DONE
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSED
    assert case.failure_reason == "1 of 2 images could not be analysed."


def test_a_store_down_during_analysis_is_retried_and_the_case_is_analysed_once_it_is_back(
    deployed, object_store, local_cache
):
    case = case_with_images(noise_png(1), noise_png(2))
    local_artifact(deployed)  # the model is here already; the uploads are not
    object_store.relay.cut()

    with pytest.raises(OSError) as raised:
        case_analyse(case_id=case.pk, worker_host="w1")
    # The task retries what it raises here, and nothing was marked failed for good.
    assert isinstance(raised.value, TRANSIENT_ERRORS)
    assert not isinstance(raised.value, FileNotFoundError)
    assert not case.images.filter(status=SmearImage.Status.FAILED).exists()

    object_store.relay.restore()
    outcome = case_analyse(case_id=case.pk, worker_host="w1")
    assert outcome.predicted == 2
    assert set(case.images.values_list("status", flat=True)) == {SmearImage.Status.DONE}


def test_heatmaps_are_written_to_the_store(deployed, object_store):
    case = case_with_images(noise_png(1))
    case_analyse(case_id=case.pk, worker_host="w1")
    case_heatmaps_make(case_id=case.pk, model_version_id=deployed.pk, holder="w1:1")
    prediction = Prediction.objects.get(image__case=case)
    assert prediction.heatmap.name
    assert f"media/{prediction.heatmap.name}" in object_store.objects()
