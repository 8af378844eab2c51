"""Local evaluation in the registry: the command and the task keep the result, pages show it.

The scoring itself (``training.local_evaluation``) is tested in tests/training."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEvent
from inference.models import ModelEvaluation
from inference.services.evaluation import (
    EvaluationRequestError,
    model_version_evaluation_request,
)
from inference.services.registry import model_version_import
from tests.helpers import generated_set, noise_png


@pytest.mark.django_db
def test_the_command_keeps_the_result_audits_it_and_the_registry_shows_it(
    artifacts, tmp_path, admin_user, client_for
):
    version = model_version_import(source=artifacts["v1"])
    data_dir = generated_set(tmp_path / "site")
    call_command(
        "evaluate_model", str(data_dir), model="tiny:v1", user=admin_user.username, note="Lab 2"
    )
    evaluation = ModelEvaluation.objects.get()
    assert evaluation.model_version == version and evaluation.actor == admin_user
    assert evaluation.images_count == 12 and evaluation.note == "Lab 2"
    assert evaluation.accuracy == evaluation.result["metrics"]["accuracy"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.EVALUATE)
    assert event.detail["images"] == 12 and event.actor == admin_user

    page = client_for(admin_user).get(f"/registry/{version.pk}/").content.decode()
    assert "data-evaluations" in page and "Lab 2" in page
    assert "Confusion matrix of the latest (12 images)" in page
    assert "No images of CLL, CML" in page
    admin_page = client_for(admin_user).get(
        reverse("admin:inference_modelversion_change", args=[version.pk])
    )
    assert admin_page.status_code == 200 and "Lab 2" in admin_page.content.decode()


@pytest.mark.django_db
def test_the_command_refuses_clearly_and_keeps_nothing(artifacts, tmp_path, alice):
    model_version_import(source=artifacts["v1"])
    data_dir = generated_set(tmp_path / "site")
    with pytest.raises(CommandError, match="no model is deployed"):
        call_command("evaluate_model", str(data_dir))
    with pytest.raises(CommandError, match="no model version tiny v9"):
        call_command("evaluate_model", str(data_dir), model="tiny:v9")
    with pytest.raises(CommandError, match="alice is not an administrator"):
        call_command("evaluate_model", str(data_dir), model="tiny:v1", user="alice")
    (data_dir / "lymphoma").mkdir()
    (data_dir / "lymphoma" / "x.png").write_bytes(noise_png(50))
    with pytest.raises(CommandError, match="lymphoma: not among the model's classes"):
        call_command("evaluate_model", str(data_dir), model="tiny:v1")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate_model", str(tmp_path / "nowhere"), model="tiny:v1")
    assert not ModelEvaluation.objects.exists()


@pytest.mark.django_db
def test_the_deploy_confirmation_shows_the_latest_local_evaluation_or_its_absence(
    artifacts, tmp_path, admin_user, client_for
):
    version = model_version_import(source=artifacts["v1"])
    client = client_for(admin_user)
    deploy = f"/registry/{version.pk}/deploy/"
    assert "has not been evaluated on this site's own images" in client.get(deploy).content.decode()
    assert (
        "data-local-evaluation"
        not in client.get(f"/registry/{version.pk}/retire/").content.decode()
    )

    call_command(
        "evaluate_model", str(generated_set(tmp_path / "site")), model="tiny:v1", note="Lab 2"
    )
    page = client.get(deploy).content.decode()
    evaluation = ModelEvaluation.objects.get()
    assert evaluation.accuracy is not None
    assert f"Latest local evaluation: <strong>{evaluation.accuracy * 100:.1f}%</strong>" in page
    assert "on 12 images (Lab 2," in page and "No images of CLL, CML" in page


@pytest.fixture
def evaluation_sets(settings, tmp_path) -> Path:
    settings.EVALUATION_DATA_ROOT = tmp_path / "sets"
    generated_set(settings.EVALUATION_DATA_ROOT / "lab2")
    return settings.EVALUATION_DATA_ROOT


def _queued_task() -> tuple[str, list]:
    """Take the one message off the test queue: what a worker would receive."""
    from leukweb.celery import app as celery_app

    with celery_app.connection_for_read() as conn:
        message = conn.SimpleQueue(celery_app.conf.task_default_queue).get(timeout=5)
        message.ack()
    return message.headers["task"], message.decode()[0]


@pytest.mark.django_db
def test_an_admin_queues_an_evaluation_from_the_registry_and_a_worker_fills_it(
    artifacts, evaluation_sets, admin_user, client_for, django_capture_on_commit_callbacks
):
    from inference.tasks import evaluate_model
    from leukweb.celery import app as celery_app

    celery_app.control.purge()
    version = model_version_import(source=artifacts["v1"])
    client = client_for(admin_user)
    page = client.get(f"/registry/{version.pk}/").content.decode()
    assert '<option value="lab2">lab2</option>' in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/registry/{version.pk}/evaluate/", {"dataset": "lab2", "note": "Lab 2"}
        )
    assert response.status_code == 302
    evaluation = ModelEvaluation.objects.get()
    assert evaluation.status == "pending" and evaluation.actor == admin_user
    assert "data-evaluation-pending" in client.get(f"/registry/{version.pk}/").content.decode()

    task, args = _queued_task()
    assert (task, args) == ("inference.evaluate_model", [evaluation.pk])
    evaluate_model.apply(args=tuple(args))
    evaluation.refresh_from_db()
    assert evaluation.status == "done" and evaluation.images_count == 12
    page = client.get(f"/registry/{version.pk}/").content.decode()
    assert "Confusion matrix of the latest (12 images)" in page and "Lab 2" in page

    done = evaluation.result
    evaluate_model.apply(args=tuple(args))  # a re-delivered message changes nothing
    evaluation.refresh_from_db()
    assert evaluation.result == done


@pytest.mark.django_db
def test_a_set_that_cannot_be_scored_fails_with_its_reason_on_the_page(
    artifacts, evaluation_sets, admin_user, client_for, django_capture_on_commit_callbacks
):
    from inference.tasks import evaluate_model
    from leukweb.celery import app as celery_app

    celery_app.control.purge()
    (evaluation_sets / "lab2" / "lymphoma").mkdir()
    (evaluation_sets / "lab2" / "lymphoma" / "x.png").write_bytes(noise_png(50))
    version = model_version_import(source=artifacts["v1"])
    client = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/registry/{version.pk}/evaluate/", {"dataset": "lab2"})
    _, args = _queued_task()
    evaluate_model.apply(args=tuple(args))
    evaluation = ModelEvaluation.objects.get()
    assert evaluation.status == "failed"
    assert "lymphoma: not among the model's classes" in evaluation.failure_reason
    page = client.get(f"/registry/{version.pk}/").content.decode()
    assert "lymphoma: not among the model" in page
    assert (
        "has not been evaluated" in client.get(f"/registry/{version.pk}/deploy/").content.decode()
    )


@pytest.mark.django_db
def test_only_the_offered_sets_can_be_asked_for(artifacts, evaluation_sets, admin_user, client_for):
    version = model_version_import(source=artifacts["v1"])
    client = client_for(admin_user)
    for name in ("../sets/lab2", "/etc", "lab3"):
        response = client.post(f"/registry/{version.pk}/evaluate/", {"dataset": name}, follow=True)
        assert "Choose one of the labelled sets listed." in response.content.decode()
        with pytest.raises(EvaluationRequestError, match="no labelled set"):
            model_version_evaluation_request(model_version=version, dataset=name, actor=admin_user)
    assert not ModelEvaluation.objects.exists()
