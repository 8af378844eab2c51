"""Real Celery worker processes: the path an upload takes in production."""

import io
import os
import re
import signal
import time

import pytest
from django.conf import settings

from cases.models import SmearImage
from cases.services import Upload, case_create
from inference.dispatch import case_analysis_request, case_heatmaps_request
from inference.models import CaseResult, HeatmapState, Prediction
from inference.services.registry import model_version_deploy, model_version_import
from inference.tasks import analyse_case
from tests.factories import case_with_images
from tests.helpers import compose_grace_s, noise_png
from tests.worker import running_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def worker_paths(tmp_path) -> dict[str, str]:
    """The worker reads the same uploads and model storage as this test."""
    return {"MEDIA_ROOT": str(tmp_path / "media"), "MODELS_ROOT": str(tmp_path / "models")}


def wait_for(check, *, timeout: float = 90.0, what: str = "it", worker=None, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    log = worker.log_path.read_text()[-4000:] if worker is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def upload(user, identifier: str, seed: int):
    return case_create(
        user=user,
        new_patient={"team": user.teams.get(), "identifier": identifier},
        uploads=[Upload(io.BytesIO(noise_png(seed)), f"{identifier}.png")],
        submit=True,
    )


def prediction_of(case):
    return Prediction.objects.filter(image__case=case).select_related("model_version").first()


@pytest.mark.embedded
@pytest.mark.slow
def test_upload_to_prediction_then_a_new_deploy_serves_the_next_upload(artifacts, alice, tmp_path):
    v1 = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=v1, actor=None, reason="first")
    with running_worker(env=worker_paths(tmp_path)) as worker:
        first = upload(alice, "P-1", seed=1)
        before = wait_for(lambda: prediction_of(first), what="the first prediction", worker=worker)
        assert before.model_version == v1
        assert CaseResult.objects.get(case=first).model_version == v1

        v2 = model_version_import(source=artifacts["v2"])
        model_version_deploy(model_version=v2, actor=None, reason="better")
        second = upload(alice, "P-2", seed=2)
        after = wait_for(lambda: prediction_of(second), what="the second prediction", worker=worker)
        assert after.model_version == v2
        assert CaseResult.objects.get(case=second, primary=True).model_version == v2

    unchanged = Prediction.objects.get(pk=before.pk)
    assert unchanged.model_version == v1 and unchanged.probabilities == before.probabilities
    assert Prediction.objects.filter(image__case=first).count() == 1
    first.refresh_from_db()
    assert first.status == "analysed"


def imported_modules(log: str) -> set[str]:
    """The top-level packages a process imported, from its ``python -X importtime`` log."""
    found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", log, re.MULTILINE)
    return {name.split(".")[0] for name in found}


@pytest.mark.embedded
@pytest.mark.slow
def test_an_analysis_worker_never_imports_tensorflow_and_a_heatmap_worker_attaches_heatmaps(
    artifacts, alice, tmp_path
):
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="first")
    # Every module the worker process imports is logged, from start to stop.
    with running_worker(env=worker_paths(tmp_path), python_options=("-X", "importtime")) as w:
        case = upload(alice, "P-1", seed=1)
        wait_for(lambda: prediction_of(case), what="the prediction", worker=w)
    modules = imported_modules(w.log_path.read_text())
    assert {"celery", "django", "onnxruntime"} <= modules  # the log shows what it loaded
    assert not {"tensorflow", "keras", "tf2onnx"} & modules
    assert prediction_of(case).heatmap.name == ""  # queued for a worker that has TensorFlow

    heatmap_queue = settings.CELERY_HEATMAP_QUEUE
    with running_worker(env=worker_paths(tmp_path), queues=heatmap_queue, purge=False) as w:
        made = wait_for(
            lambda: Prediction.objects.filter(image__case=case).exclude(heatmap="").first(),
            what="the heatmap",
            worker=w,
        )
    assert made.heatmap.name.startswith("heatmaps/") and made.model_version == version
    assert "inference.make_heatmaps" in w.log_path.read_text()


@pytest.mark.slow
def test_a_heatmap_worker_told_to_stop_mid_task_finishes_it_within_the_grace_and_loses_nothing(
    artifacts, tmp_path
):
    """SIGTERM as docker sends it (to the worker's main process): a warm shutdown. The
    overlays the run claimed are made, the rest of the case waits in the queue for the
    next worker, and no file is left without its row."""
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="first")
    # Big images: each overlay takes a moment, so the signal lands while the task runs.
    case = case_with_images(*(noise_png(seed, size=1600) for seed in range(8)))
    env = {**worker_paths(tmp_path), "INFERENCE_HEATMAP_BATCH": "4"}
    queue = settings.CELERY_HEATMAP_QUEUE
    predictions = Prediction.objects.filter(image__case=case)
    with running_worker(env=env, queues=queue, pool="prefork") as worker:
        analyse_case.apply(args=(case.pk,)).get()
        assert case_heatmaps_request(case.pk, version.pk)  # what the analysis worker sends
        claimed = wait_for(
            lambda: set(predictions.exclude(heatmap_claimed_by="").values_list("pk", flat=True)),
            what="the worker to claim overlays",
            worker=worker,
            interval=0.02,
        )
        assert predictions.filter(heatmap_state=HeatmapState.PENDING).count() > len(claimed)
        told = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=compose_grace_s("heatmaps"))
        took = time.monotonic() - told
    assert worker.returncode == 0, worker.log_path.read_text()[-3000:]
    made = set(predictions.filter(heatmap_state=HeatmapState.MADE).values_list("pk", flat=True))
    assert claimed <= made, f"stopped after {took:.1f} s without finishing its task"
    assert not predictions.exclude(heatmap_claimed_by="").exists()

    with running_worker(env=env, queues=queue, purge=False) as again:
        wait_for(
            lambda: not predictions.exclude(heatmap_state=HeatmapState.MADE).exists(),
            what="the rest of the case's heatmaps",
            worker=again,
        )
    names = {f"media/{name}" for name in predictions.values_list("heatmap", flat=True)}
    files = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "media/heatmaps").iterdir()}
    assert files == names and len(names) == 8


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"),
    reason="the filesystem broker has no acknowledgements, so nothing is re-delivered",
)
def test_a_killed_workers_task_is_delivered_again_and_completed_once(artifacts, tmp_path):
    v1 = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=v1, actor=None, reason="first")
    # Enough images that the task outlasts the moment of the kill: on ONNX Runtime the
    # first task no longer waits seconds for TensorFlow.
    case = case_with_images(*(noise_png(seed, size=512) for seed in range(1, 25)))
    env = {**worker_paths(tmp_path), "DJANGO_SETTINGS_MODULE": "tests.inference.worker_settings"}

    with running_worker(env=env) as doomed:
        case_analysis_request(case.pk)
        # Killed while the task runs (its first run imports TensorFlow and loads the
        # model: seconds), before it could acknowledge the message.
        wait_for(
            lambda: "inference.analyse_case[" in doomed.log_path.read_text(),
            what="the task to reach the first worker",
            worker=doomed,
            interval=0.01,
        )
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
    assert not Prediction.objects.exists(), "the first worker finished before it was killed"

    with running_worker(env=env) as survivor:
        wait_for(
            lambda: set(case.images.values_list("status", flat=True)) == {"done"},
            what="the re-delivered task",
            worker=survivor,
        )
        time.sleep(4)  # past the visibility timeout: a second delivery would show now
        log = survivor.log_path.read_text()
    runs = [line for line in log.splitlines() if "inference.analyse_case[" in line]
    assert sum("succeeded" in line for line in runs) == 1, log
    assert Prediction.objects.filter(image__case=case).count() == 24
    assert SmearImage.objects.filter(case=case, status="done").count() == 24
