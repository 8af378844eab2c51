"""The registry's records in the Django admin are read-only lists that link to the
registry's pages; an artifact is imported from the registry page, as a zip."""

import io
import zipfile
from http import HTTPStatus

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from inference.models import ModelVersion
from inference.services.registry import model_version_import

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
    response = client.post(reverse("registry:import"), {"archive": zipped(artifacts["v1"])})
    version = ModelVersion.objects.get()
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("registry:detail", args=[version.pk])
    page = client.get(response["Location"]).content.decode()
    assert "not for clinical use" in page and "Deploy" in page


def test_a_damaged_zip_is_refused_with_the_reason_and_nothing_is_kept(
    client_for, admin_user, artifacts
):
    client = client_for(admin_user)
    response = client.post(
        reverse("registry:import"), {"archive": zipped(artifacts["v1"], damage=True)}
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "does not match the manifest" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_a_zip_whose_paths_leave_the_folder_is_refused_before_unpacking(client_for, admin_user):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../manifest.json", "{}")
    upload = SimpleUploadedFile("evil.zip", buffer.getvalue(), "application/zip")
    response = client_for(admin_user).post(reverse("registry:import"), {"archive": upload})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "unsafe path" in response.content.decode()


def test_the_admin_lists_versions_read_only_and_links_to_the_registry(
    client_for, admin_user, artifacts
):
    version = model_version_import(source=artifacts["v1"])
    client = client_for(admin_user)
    page = client.get(reverse("admin:inference_modelversion_change", args=[version.pk]))
    assert page.status_code == HTTPStatus.OK
    assert reverse("registry:detail", args=[version.pk]) in page.content.decode()
    listing = client.get(reverse("admin:inference_modelversion_changelist")).content.decode()
    assert reverse("registry:import") in listing
    assert client.post(
        reverse("admin:inference_modelversion_change", args=[version.pk]), {"status": "deployed"}
    ).status_code in (HTTPStatus.FORBIDDEN, HTTPStatus.OK)
    assert ModelVersion.objects.deployed() is None


def test_a_clinician_cannot_import_or_deploy(client_for, alice, artifacts):
    version = model_version_import(source=artifacts["v1"])
    client = client_for(alice)
    url = reverse("registry:action", args=[version.pk, "deploy"])
    assert client.post(url, {"reason": "x"}).status_code == HTTPStatus.FORBIDDEN
    upload = zipped(artifacts["v2"])
    assert client.post(reverse("registry:import"), {"archive": upload}).status_code == (
        HTTPStatus.FORBIDDEN
    )
    assert ModelVersion.objects.deployed() is None
    assert ModelVersion.objects.count() == 1


def test_the_import_page_offers_a_progress_bar_and_keeps_its_plain_form(client_for, admin_user):
    page = client_for(admin_user).get(reverse("registry:import")).content.decode()
    assert 'enctype="multipart/form-data" data-import' in page
    assert "data-progress" in page and "js/registry_import.js" in page


def test_the_uploader_script_gets_where_to_go_as_json(client_for, admin_user, artifacts):
    client = client_for(admin_user)
    response = client.post(
        reverse("registry:import"),
        {"archive": zipped(artifacts["v1"])},
        headers={"Accept": "application/json"},
    )
    version = ModelVersion.objects.get()
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"redirect": reverse("registry:detail", args=[version.pk])}
    assert f"Imported {version}" in client.get(response.json()["redirect"]).content.decode()


def test_the_uploader_script_gets_the_refusal_as_json_and_nothing_is_kept(
    client_for, admin_user, artifacts
):
    client = client_for(admin_user)
    response = client.post(
        reverse("registry:import"),
        {"archive": zipped(artifacts["v1"], damage=True)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    [error] = response.json()["errors"]["archive"]
    assert "does not match the manifest" in error["message"]
    assert not ModelVersion.objects.exists()

    nothing = client.post(reverse("registry:import"), headers={"Accept": "application/json"})
    assert nothing.status_code == HTTPStatus.BAD_REQUEST
    assert nothing.json()["errors"]["archive"][0]["code"] == "required"


def test_a_clinician_gets_no_json_answer_from_the_import(client_for, alice, artifacts):
    response = client_for(alice).post(
        reverse("registry:import"),
        {"archive": zipped(artifacts["v1"])},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not ModelVersion.objects.exists()
