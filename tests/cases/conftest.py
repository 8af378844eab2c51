"""Builders for cases tests: real smear photographs, generated images, and records."""

import io
import struct
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import Team
from cases import services
from cases.models import Case, Patient
from inference import dispatch

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SMEARS = DATA / "bccd-smears" / "images"


def smear_paths(count: int) -> list[Path]:
    paths = sorted(SMEARS.glob("*.jpg"))[:count]
    if len(paths) < count:
        pytest.skip(f"the BCCD smear photographs are not in {SMEARS}")
    return paths


def smear_bytes(index: int = 0) -> bytes:
    return smear_paths(index + 1)[index].read_bytes()


def image_bytes(fmt: str = "PNG", size=(40, 30), color=(200, 100, 150), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data behind it."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def as_uploads(*files: tuple[str, bytes]) -> list[services.Upload]:
    return [services.Upload(stream=io.BytesIO(data), name=name) for name, data in files]


def stored_files(root: Path) -> list[Path]:
    media = root / "media"
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


@pytest.fixture
def team_a(alice) -> Team:
    return Team.objects.get(name="Team A")


@pytest.fixture
def team_b(charlie) -> Team:
    return Team.objects.get(name="Team B")


@pytest.fixture
def alice_patient(alice, team_a) -> Patient:
    return services.patient_create(user=alice, team=team_a, identifier="A-0001", year_of_birth=1970)


@pytest.fixture
def alice_case(alice, alice_patient, django_capture_on_commit_callbacks) -> Case:
    """A submitted case of Team A with two real smear photographs."""
    with django_capture_on_commit_callbacks():
        return services.case_create(
            user=alice,
            patient=alice_patient,
            uploads=as_uploads(("smear-1.jpg", smear_bytes(0)), ("smear-2.jpg", smear_bytes(1))),
            submit=True,
        )


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[int]:
    """Cases handed to the workers; no broker is needed to test what is queued and when."""
    sent: list[int] = []

    def send(case_id: int) -> bool:
        sent.append(case_id)
        return True

    monkeypatch.setattr(dispatch, "case_analysis_request", send)
    return sent


def model_version(name: str = "cnn", status: str = "deployed"):
    from inference.models import ModelVersion

    return ModelVersion.objects.create(
        name=name,
        version="1",
        architecture="tiny",
        classes=["ALL", "AML", "CLL", "CML"],
        input_size=32,
        artifact=f"{name}/1",
        content_hash="sha256:" + "0" * 64,
        manifest={},
        status=status,
    )


def case_result(case, version, label: str, *, primary: bool = True, needs_review: bool = False):
    from inference.models import CaseResult

    others = [c for c in version.classes if c != label]
    probabilities = {label: 0.7, **{c: 0.1 for c in others}}
    return CaseResult.objects.create(
        case=case,
        model_version=version,
        label=label,
        confidence=0.7,
        probabilities=probabilities,
        needs_review=needs_review,
        images_count=case.images.count(),
        primary=primary,
    )


def prediction(image, version, label: str):
    from inference.models import Prediction

    return Prediction.objects.create(
        image=image,
        model_version=version,
        probabilities={c: (0.91 if c == label else 0.03) for c in version.classes},
        label=label,
        confidence=0.91,
        inference_ms=12.0,
        worker_host="test",
    )
