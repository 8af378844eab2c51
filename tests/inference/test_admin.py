"""The registry in the Django admin: zip import, and changes that need a confirmed reason."""

import io
import zipfile
from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from inference.models import DeploymentEvent, ModelVersion
from inference.services import model_version_import

pytestmark = pytest.mark.django_db


def zipped(folder, *, damage: bool = False) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            data = path.read_bytes()
            if damage and path.name == "model.keras":
                data = data[:-10]
            archive.writestr(f"{folder.name}/{path.name}", data)
    return SimpleUploadedFile("artifact.zip", buffer.getvalue(), "application/zip")


def test_an_admin_imports_a_zipped_artifact(client_for, admin_user, artifacts):
    client = client_for(admin_user)
    url = reverse("admin:inference_modelversion_import")
    response = client.post(url, {"archive": zipped(artifacts["v1"])})
    version = ModelVersion.objects.get()
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("admin:inference_modelversion_change", args=[version.pk])
    page = client.get(response["Location"]).content.decode()
    assert "NOT for clinical use" in page and "Deploy" in page


def test_a_damaged_zip_is_refused_with_the_reason_and_nothing_is_kept(
    client_for, admin_user, artifacts
):
    client = client_for(admin_user)
    url = reverse("admin:inference_modelversion_import")
    response = client.post(url, {"archive": zipped(artifacts["v1"], damage=True)})
    assert response.status_code == HTTPStatus.OK
    assert "does not match the manifest" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_deploy_needs_a_reason_and_a_confirmation(client_for, admin_user, artifacts):
    version = model_version_import(source=artifacts["v1"])
    client = client_for(admin_user)
    url = reverse("admin:inference_modelversion_change_status", args=[version.pk, "deploy"])
    assert "Every new analysis will use this version" in client.get(url).content.decode()
    assert client.post(url, {"reason": "better"}).status_code == HTTPStatus.OK
    assert ModelVersion.objects.deployed() is None
    response = client.post(url, {"reason": "better", "confirm": "on"})
    assert response.status_code == HTTPStatus.FOUND
    assert ModelVersion.objects.deployed() == version
    event = DeploymentEvent.objects.get()
    assert (event.actor, event.reason) == (admin_user, "better")


def test_a_clinician_cannot_reach_the_registry(client_for, alice, artifacts):
    version = model_version_import(source=artifacts["v1"])
    client = client_for(alice)
    url = reverse("admin:inference_modelversion_change_status", args=[version.pk, "deploy"])
    response = client.post(url, {"reason": "x", "confirm": "on"})
    assert response.status_code in (HTTPStatus.FOUND, HTTPStatus.FORBIDDEN)
    assert ModelVersion.objects.deployed() is None
