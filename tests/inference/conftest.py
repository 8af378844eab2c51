"""Tiny packaged models (32 px, a few filters) and cases with real image files.

The artifacts are written by the training pipeline's own packaging function, so these
tests exercise the same format that `python -m training` produces.
"""

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from accounts.models import Team
from cases.models import Case, Patient, SmearImage

CLASSES = ["healthy", "ALL", "AML", "CLL", "CML"]
SIZE = 32


def tiny_model(seed: int, n_classes: int = len(CLASSES)):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def manifest_fields(**overrides) -> dict:
    """A tiny artifact's manifest, as the training pipeline would write it."""
    return {
        "name": "tiny",
        "version": "v1",
        "architecture": "tiny-cnn",
        "classes": CLASSES,
        "input_size": SIZE,
        "dataset_fingerprint": "sha256:test",
        "split_sizes": {"train": 1, "validation": 1, "test": 1},
        "metrics": {"accuracy": 0.2, "macro_f1": 0.2, "ece_before": 0.1, "ece_after": 0.05},
        "temperature": 1.5,
        "confidence_threshold": 0.6,
        "heatmap_layer": "conv",
        "synthetic": True,
        **overrides,
    }


def package(out: Path, *, version: str, seed: int, **overrides) -> Path:
    from training.package import write_artifact

    fields = manifest_fields(version=version, **overrides)
    model = tiny_model(seed, n_classes=len(fields["classes"]))
    folder, _ = write_artifact(model, out, manifest_fields=fields)
    return folder


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """Two valid tiny artifacts, v1 and v2, built once per test session."""
    out = tmp_path_factory.mktemp("artifacts")
    return {v: package(out, version=v, seed=i) for i, v in enumerate(["v1", "v2"], start=1)}


@pytest.fixture
def artifact_copy(artifacts, tmp_path):
    """A private copy of an artifact, free to damage."""

    def copy(version: str = "v1") -> Path:
        target = tmp_path / f"copy-{version}"
        shutil.copytree(artifacts[version], target)
        return target

    return copy


@pytest.fixture(autouse=True)
def _models_storage_in_tmp(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "models": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "models"},
        },
    }


def png_bytes(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_case(*, team: str = "Team A", images: list[bytes] = (), status=Case.Status.SUBMITTED):
    team_row, _ = Team.objects.get_or_create(name=team)
    patient, _ = Patient.objects.get_or_create(team=team_row, identifier="P-001")
    case = Case.objects.create(patient=patient, team=team_row, status=status)
    for data in images:
        add_image(case, data)
    return case


def add_image(case: Case, data: bytes) -> SmearImage:
    image = SmearImage(
        case=case,
        original_name="field.png",
        sha256=hashlib.sha256(data).hexdigest(),
        width=48,
        height=48,
        format="PNG",
        size_bytes=len(data),
    )
    image.file.save("field.png", ContentFile(data), save=False)
    image.save()
    return image
