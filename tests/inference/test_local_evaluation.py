"""Local evaluation: a registered model scored on a site's labelled folder, kept and shown."""

from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEvent
from inference.evaluation import DatasetError, evaluate_folder
from inference.models import ModelEvaluation
from inference.predictor import Predictor
from inference.services.evaluation import (
    EvaluationRequestError,
    model_version_evaluation_request,
)
from inference.services.registry import model_version_import
from tests.helpers import TALEQANI, noise_png, package
from training.report import local_evaluation_warnings

TALEQANI_CLASSES = ["Benign", "Early", "Pre", "Pro"]


def _labelled_folder(root: Path, per_class: dict[str, list[bytes]]) -> Path:
    for label, images in per_class.items():
        (root / label).mkdir(parents=True)
        for i, data in enumerate(images):
            (root / label / f"{i}.png").write_bytes(data)
    return root


def _generated_set(root: Path) -> Path:
    labels = ["healthy", "ALL", "AML"]
    return _labelled_folder(
        root, {label: [noise_png(10 * k + i) for i in range(4)] for k, label in enumerate(labels)}
    )


def _expected_accuracy(predictor: Predictor, data_dir: Path) -> float:
    """The same images through Predictor.predict, the worker's call, one folder at a time."""
    right = total = 0
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        arrays = [predictor.prepare(f.read_bytes()) for f in sorted(folder.iterdir())]
        answers, _ = predictor.predict(arrays)
        right += sum(a.label == folder.name for a in answers)
        total += len(answers)
    return right / total


def test_it_scores_a_labelled_folder_as_the_worker_would(artifacts, tmp_path):
    predictor = Predictor.load(artifacts["v1"])
    data_dir = _generated_set(tmp_path / "site")
    result = evaluate_folder(predictor, data_dir)

    assert result["n"] == 12
    assert result["classes_present"] == ["healthy", "ALL", "AML"]
    metrics = result["metrics"]
    assert metrics["accuracy"] == pytest.approx(_expected_accuracy(predictor, data_dir))
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == 12
    assert matrix[:3].sum(axis=1).tolist() == [4, 4, 4] and matrix[3:].sum() == 0
    assert 0.0 <= result["ece"] <= 1.0
    assert result["review"]["threshold"] == predictor.confidence_threshold
    assert result["colour_baseline"]["folds"] == 4
    assert 0.0 <= result["colour_baseline"]["mcnemar_p"] <= 1.0
    assert result["out_of_scope"] is None  # this artifact has no guard
    assert "No images of CLL, CML" in " ".join(local_evaluation_warnings(result, None))


def test_duplicates_are_scored_once_and_unreadable_files_are_left_out_and_named(
    artifacts, tmp_path
):
    data_dir = _generated_set(tmp_path / "site")
    (data_dir / "ALL" / "copy.png").write_bytes((data_dir / "ALL" / "0.png").read_bytes())
    (data_dir / "AML" / "broken.png").write_bytes(noise_png(99)[:200])
    result = evaluate_folder(Predictor.load(artifacts["v1"]), data_dir)
    assert result["n"] == 12
    assert result["duplicates_dropped"] == 1
    assert result["unreadable_count"] == 1 and result["unreadable"][0].startswith("AML/broken.png")
    assert "1 file(s) could not be decoded" in " ".join(local_evaluation_warnings(result, None))


def test_a_folder_naming_no_class_of_the_model_is_refused_unless_mapped(artifacts, tmp_path):
    data_dir = _labelled_folder(
        tmp_path / "site",
        {"normal": [noise_png(1), noise_png(2)], "AML": [noise_png(3), noise_png(4)]},
    )
    predictor = Predictor.load(artifacts["v1"])
    with pytest.raises(DatasetError, match=r"normal: not among the model's classes"):
        evaluate_folder(predictor, data_dir)
    result = evaluate_folder(predictor, data_dir, label_map={"normal": "healthy"})
    assert result["classes_present"] == ["healthy", "AML"]


def test_it_scores_real_taleqani_smears(tmp_path):
    files = {label: sorted((TALEQANI / label).glob("*.jpg"))[:5] for label in TALEQANI_CLASSES}
    if not all(len(found) == 5 for found in files.values()):
        pytest.skip(f"the Taleqani images are not in {TALEQANI}")
    data_dir = tmp_path / "site"
    for label, paths in files.items():
        (data_dir / label).mkdir(parents=True)
        for path in paths:  # links, not copies: the shared images stay where they are
            (data_dir / label / path.name).symlink_to(path.resolve())
    folder = package(
        tmp_path / "art",
        version="1",
        seed=5,
        name="taleqani-tiny",
        classes=TALEQANI_CLASSES,
        metrics={"accuracy": 0.25, "macro_f1": 0.2, "ece_before": 0.1, "ece_after": 0.1},
        temperature=1.0,
        confidence_threshold=0.5,
        synthetic=False,  # untrained, but the images are real
    )
    predictor = Predictor.load(folder)
    result = evaluate_folder(predictor, data_dir)
    assert result["n"] == 20 and result["classes_present"] == TALEQANI_CLASSES
    assert result["metrics"]["accuracy"] == pytest.approx(_expected_accuracy(predictor, data_dir))
    assert np.asarray(result["metrics"]["confusion_matrix"]).sum() == 20
    # Colour alone separates this set well (about 89 % on the whole of it).
    assert result["colour_baseline"]["folds"] == 5
    assert result["colour_baseline"]["accuracy"] > 0.5


@pytest.mark.django_db
def test_the_command_keeps_the_result_audits_it_and_the_registry_shows_it(
    artifacts, tmp_path, admin_user, client_for
):
    version = model_version_import(source=artifacts["v1"])
    data_dir = _generated_set(tmp_path / "site")
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
    data_dir = _generated_set(tmp_path / "site")
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


def test_the_warnings_name_a_drop_from_the_report_and_a_colour_shortcut():
    result = {
        "metrics": {"accuracy": 0.70, "per_class": {"ALL": {}, "AML": {}}},
        "classes_present": ["ALL", "AML"],
        "colour_baseline": {"accuracy": 0.90, "mcnemar_p": 1.0, "folds": 5},
        "unreadable_count": 0,
    }
    warnings = local_evaluation_warnings(result, reported_accuracy=0.99)
    assert warnings[0].startswith("Accuracy here is 70.0%, 29.0 points below the 99.0%")
    assert warnings[1].startswith("Colour statistics alone separate these classes 90.0%")
    assert len(warnings) == 2
    result["colour_baseline"] = {"accuracy": 0.5, "mcnemar_p": 0.001, "folds": 5}
    assert local_evaluation_warnings(result, reported_accuracy=0.72) == []


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
        "evaluate_model", str(_generated_set(tmp_path / "site")), model="tiny:v1", note="Lab 2"
    )
    page = client.get(deploy).content.decode()
    evaluation = ModelEvaluation.objects.get()
    assert evaluation.accuracy is not None
    assert f"Latest local evaluation: <strong>{evaluation.accuracy * 100:.1f}%</strong>" in page
    assert "on 12 images (Lab 2," in page and "No images of CLL, CML" in page


@pytest.fixture
def evaluation_sets(settings, tmp_path) -> Path:
    settings.EVALUATION_DATA_ROOT = tmp_path / "sets"
    _generated_set(settings.EVALUATION_DATA_ROOT / "lab2")
    return settings.EVALUATION_DATA_ROOT


def _queued_task() -> tuple[str, tuple]:
    """Take the one message off the test queue: what a worker would receive."""
    from leukweb.celery import app as celery_app

    with celery_app.connection_for_read() as conn:
        message = conn.SimpleQueue(celery_app.conf.task_default_queue).get(timeout=5)
        message.ack()
    return message.headers["task"], tuple(message.decode()[0])


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
    assert (task, args) == ("inference.evaluate_model", (evaluation.pk,))
    evaluate_model.apply(args=args)
    evaluation.refresh_from_db()
    assert evaluation.status == "done" and evaluation.images_count == 12
    page = client.get(f"/registry/{version.pk}/").content.decode()
    assert "Confusion matrix of the latest (12 images)" in page and "Lab 2" in page

    done = evaluation.result
    evaluate_model.apply(args=args)  # a re-delivered message changes nothing
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
    evaluate_model.apply(args=args)
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
