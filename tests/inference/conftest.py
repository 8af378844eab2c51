"""Cases with real image files, and the models storage in a temporary folder.

The tiny packaged models these tests serve come from ``tests/runtime/conftest.py``.
"""

import hashlib

import pytest
from django.core.files.base import ContentFile

from accounts.models import Team
from cases.models import Case, Patient, SmearImage


@pytest.fixture(autouse=True)
def _models_storage_in_tmp(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "models": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "models"},
        },
    }


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
