"""Rows for review tests, written directly: model versions, cases with hand-written answers.

dave is a reviewer for Team B only: an outsider to Team A's cases.
"""

import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import Role, Team
from accounts.services import user_create
from cases.models import Case, Patient, SmearImage
from inference.models import CaseResult, ModelVersion, Prediction
from training.evaluate import full_evaluation

CLASSES = ["ALL", "AML", "CLL", "CML"]


@pytest.fixture
def dave(db):
    user, _ = user_create(username="dave", role=Role.REVIEWER, teams=["Team B"], password="pw")
    return user


def version_create(
    name: str = "cnn",
    version: str = "1",
    *,
    classes=CLASSES,
    status=ModelVersion.Status.DEPLOYED,
    synthetic: bool = False,
    report: dict | None = None,
) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name,
        version=version,
        architecture="tiny_cnn",
        classes=list(classes),
        input_size=32,
        artifact=f"{name}-{version}",
        content_hash=f"sha256:{name}{version}",
        manifest={"synthetic": synthetic, "heatmap_layer": "last_conv", "classes": list(classes)},
        report=report or {},
        status=status,
    )


def _probabilities(label: str, confidence: float, classes=CLASSES) -> dict[str, float]:
    rest = (1 - confidence) / (len(classes) - 1)
    return {c: confidence if c == label else rest for c in classes}


def case_create(
    team_name: str,
    identifier: str,
    version: ModelVersion,
    *,
    label: str = "AML",
    confidence: float = 0.9,
    needs_review: bool = False,
    age_days: int = 0,
    images: int = 1,
    status=Case.Status.ANALYSED,
    shadow: tuple[ModelVersion, str] | None = None,
) -> Case:
    """An analysed case: images with predictions and the case result, as a worker leaves it."""
    team, _ = Team.objects.get_or_create(name=team_name)
    patient, _ = Patient.objects.get_or_create(team=team, identifier=identifier)
    case = Case.objects.create(patient=patient, team=team, status=status)
    Case.objects.filter(pk=case.pk).update(created=timezone.now() - timedelta(days=age_days))
    case.refresh_from_db()
    answers = [(version, label, confidence, True)]
    if shadow:
        answers.append((shadow[0], shadow[1], 0.6, False))
    for n in range(images):
        image = SmearImage.objects.create(
            case=case,
            file=f"smears/{case.pk}/{n}.png",
            original_name=f"smear-{n}.png",
            sha256=f"{case.pk:032d}{n:032d}",
            width=64,
            height=48,
            format="PNG",
            size_bytes=100,
            status=SmearImage.Status.DONE,
        )
        for model, answer, conf, _ in answers:
            Prediction.objects.create(
                image=image,
                model_version=model,
                probabilities=_probabilities(answer, conf, model.classes),
                label=answer,
                confidence=conf,
                inference_ms=5.0,
                worker_host="test",
            )
    for model, answer, conf, primary in answers:
        CaseResult.objects.create(
            case=case,
            model_version=model,
            label=answer,
            confidence=conf,
            probabilities=_probabilities(answer, conf, model.classes),
            needs_review=needs_review if primary else False,
            images_count=images,
            primary=primary,
        )
    return case


def heatmap_attach(prediction: Prediction, data: bytes = b"\x89PNG-heatmap") -> Prediction:
    prediction.heatmap.save(f"{prediction.pk}.png", ContentFile(data), save=True)
    return prediction


def training_report(classes=CLASSES, *, synthetic: bool = False) -> dict:
    """A report with the structure training/train.py writes, numbers from the real evaluator."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % len(classes)
    logits = rng.normal(size=(40, len(classes))) + 3 * np.eye(len(classes))[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    report = {
        "name": "cnn",
        "version": "1",
        "architecture": "tiny_cnn",
        "classes": list(classes),
        "input_size": 32,
        "created": "2025-01-01T00:00:00Z",
        "synthetic": synthetic,
        "config": {"seed": 1},
        "data": {"grouped": False, "sizes": {"train": 100, "validation": 40, "test": 40}},
        "training": {
            "epochs_run": 3,
            "history": {
                "accuracy": [0.4, 0.6, 0.7],
                "val_accuracy": [0.35, 0.55, 0.65],
                "loss": [1.3, 0.9, 0.7],
                "val_loss": [1.4, 1.0, 0.8],
            },
        },
        "baselines": {
            "colour_stats": {"accuracy": 0.3, "macro_f1": 0.28, "description": "mean colour"}
        },
        "baseline_warning": None,
        "evaluation": full_evaluation(probs, y, probs, y, classes),
    }
    return json.loads(json.dumps(report))
