"""The image storage failing for real (a small tmpfs, full or read-only): an upload that
fails leaves no file behind and answers 503 saying what happened and that nothing was
saved."""

import errno
import subprocess
from http import HTTPStatus

import pytest

from cases import services
from cases.models import Case, SmearImage
from tests.helpers import as_uploads, smear_bytes, stored_files, tmpfs_mounted, upload


@pytest.fixture
def small_media(tmp_path):
    """The media storage on a 160 KiB disk: room for a few smear photographs only."""
    with tmpfs_mounted(tmp_path / "media", size="160k") as media:
        yield media


def files_without_rows(tmp_path) -> set[str]:
    on_disk = {p.relative_to(tmp_path / "media").as_posix() for p in stored_files(tmp_path)}
    rows = SmearImage.all_objects.values_list("file", "thumbnail")
    return on_disk - {name for pair in rows for name in pair}


def test_uploads_that_meet_a_full_disk_leave_no_empty_or_partial_file(
    small_media, alice, alice_patient, tmp_path
):
    outcomes = []
    for i in range(12):
        try:
            services.case_create(
                user=alice,
                patient=alice_patient,
                uploads=as_uploads((f"smear-{i}.jpg", smear_bytes(i))),
                submit=True,
            )
        except services.UploadNotStored as exc:
            assert exc.code == "storage_full" and isinstance(exc.__cause__, OSError)
            assert exc.__cause__.errno == errno.ENOSPC
            outcomes.append("full")
        else:
            outcomes.append("stored")
        assert files_without_rows(tmp_path) == set(), f"after upload {i}: {outcomes}"
    assert "stored" in outcomes and "full" in outcomes, outcomes
    stored = outcomes.count("stored")
    assert Case.objects.count() == stored and SmearImage.objects.count() == stored
    assert len(stored_files(tmp_path)) == 2 * stored  # each image and its thumbnail


def _fill(alice, case) -> None:
    """Add images to the draft until the disk refuses one."""
    for i in range(12):
        try:
            services.case_images_add(
                user=alice, case=case, uploads=as_uploads((f"s-{i}.jpg", smear_bytes(i)))
            )
        except services.UploadNotStored:
            return
    raise AssertionError("the disk never filled up")


def test_the_api_answers_503_storage_full_and_nothing_is_kept(
    small_media, client_for, alice, alice_patient, tmp_path
):
    case = services.case_create(user=alice, patient=alice_patient)
    _fill(alice, case)
    before = SmearImage.objects.count()
    response = client_for(alice).post(
        f"/api/cases/{case.pk}/images/", {"file": upload("late.jpg", smear_bytes(20))}
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    error = response.json()["error"]
    assert error["code"] == "storage_full" and error["status"] == 503
    assert error["message"].startswith("The image storage is full, so nothing was saved.")
    assert response["Retry-After"] == "30"
    assert SmearImage.objects.count() == before
    assert files_without_rows(tmp_path) == set()


def test_the_upload_page_says_the_disk_is_full_to_the_script_and_to_a_plain_form(
    small_media, client_for, alice, alice_patient, tmp_path
):
    case = services.case_create(user=alice, patient=alice_patient)
    _fill(alice, case)
    client = client_for(alice)
    url = f"/cases/{case.pk}/images/"

    scripted = client.post(
        url,
        {"images": [upload("late.jpg", smear_bytes(20))]},
        headers={"accept": "application/json"},
    )
    assert scripted.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    (error,) = scripted.json()["errors"]["__all__"]
    assert error["code"] == "storage_full" and "so nothing was saved" in error["message"]

    # Without the script, the form posts and the case page says it.
    page = client.post(url, {"images": [upload("late.jpg", smear_bytes(20))]}, follow=True)
    html = page.content.decode()
    assert "The image storage is full, so nothing was saved" in html
    assert files_without_rows(tmp_path) == set()


def test_a_read_only_disk_answers_503_read_only_and_nothing_is_kept(
    small_media, client_for, alice, alice_patient, tmp_path
):
    case = services.case_create(user=alice, patient=alice_patient)
    subprocess.run(["mount", "-o", "remount,ro", str(small_media)], check=True)
    response = client_for(alice).post(
        f"/api/cases/{case.pk}/images/", {"file": upload("a.jpg", smear_bytes(0))}
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"]["code"] == "storage_read_only"
    assert not SmearImage.objects.exists() and stored_files(tmp_path) == []
