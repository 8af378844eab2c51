"""What an upload may cost the web server: the decoded pixels of one request are capped
before anything is decoded, the page uploader shares the API's per-user upload rate, and
too many files get the site's own error page, never a traceback."""

import struct
import time
from http import HTTPStatus

import pytest
from django.urls import reverse
from PIL import ImageFile
from rest_framework.throttling import SimpleRateThrottle

from cases.models import Case, Patient
from tests.helpers import image_bytes, smear_bytes, upload


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims width x height."""
    data = bytearray(image_bytes("JPEG", size=(16, 16)))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def new_case_form(alice, images) -> dict:
    return {
        "identifier": "LAB-77",
        "team": alice.teams.get().pk,
        "sex": "U",
        "specimen": "peripheral_blood",
        "stain": "wright_giemsa",
        "images": images,
    }


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Every pixel decode in this process, counted."""
    counted: list[int] = []
    original = ImageFile.ImageFile.load

    def load(self):
        counted.append(self.size[0] * self.size[1])
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return counted


@pytest.fixture
def rates(monkeypatch):
    def set_rates(**scoped: str) -> None:
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **scoped}
        )

    return set_rates


def test_fifty_small_jpegs_claiming_6000x6600_are_refused_before_any_is_decoded(
    client_for, alice, decodes
):
    bomb = jpeg_claiming(6000, 6600)  # 39.6 M pixels each: under the per-image limit
    files = [upload(f"s{n}.jpg", bomb[:-2] + bytes([n]) + bomb[-2:]) for n in range(50)]
    started = time.monotonic()
    response = client_for(alice).post(
        reverse("clinic:case_new"), new_case_form(alice, files), HTTP_ACCEPT="application/json"
    )
    elapsed = time.monotonic() - started
    assert response.status_code == HTTPStatus.BAD_REQUEST
    (error,) = response.json()["errors"]["__all__"]
    assert "1,980,000,000 pixels together" in error["message"]
    assert "200,000,000" in error["message"]
    assert decodes == [] and elapsed < 10
    assert not Case.objects.exists() and not Patient.objects.exists()


def test_the_request_pixel_cap_is_a_setting(client_for, alice, settings, queued):
    settings.UPLOAD_MAX_REQUEST_PIXELS = 640 * 480
    two = [upload("s1.jpg", smear_bytes(0)), upload("s2.jpg", smear_bytes(1))]
    response = client_for(alice).post(
        reverse("clinic:case_new"), new_case_form(alice, two), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    one = [upload("s1.jpg", smear_bytes(0))]
    response = client_for(alice).post(
        reverse("clinic:case_new"), new_case_form(alice, one), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == HTTPStatus.OK, response.content


def test_page_uploads_and_api_uploads_share_one_rate_per_user(
    client_for, api_for, alice, alice_case, rates, queued
):
    rates(uploads="2/minute")
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.DRAFT)
    api = api_for(alice)
    response = api.post(
        f"/api/cases/{alice_case.pk}/images/", {"file": upload("a.png", image_bytes("PNG"))}
    )
    assert response.status_code == HTTPStatus.CREATED, response.content
    page = client_for(alice)
    add = reverse("clinic:case_images_add", args=[alice_case.pk])
    response = page.post(
        add, {"images": [upload("b.jpg", smear_bytes(5))]}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == HTTPStatus.OK, response.content

    refused = page.post(
        add, {"images": [upload("c.jpg", smear_bytes(6))]}, HTTP_ACCEPT="application/json"
    )
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "too often" in refused.json()["errors"]["__all__"][0]["message"]
    over_api = api.post(
        f"/api/cases/{alice_case.pk}/images/", {"file": upload("d.png", image_bytes("PNG"))}
    )
    assert over_api.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert alice_case.images.count() == 4  # two from the fixture, one by API, one by page


def test_a_throttled_page_upload_says_when_to_try_again(client_for, alice, rates):
    rates(uploads="1/minute")
    client = client_for(alice)
    form = new_case_form(alice, [upload("s1.jpg", smear_bytes(0))])
    assert client.post(reverse("clinic:case_new"), form).status_code == HTTPStatus.FOUND
    form = {**new_case_form(alice, [upload("s2.jpg", smear_bytes(1))]), "identifier": "LAB-78"}
    response = client.post(reverse("clinic:case_new"), form)
    page = response.content.decode()
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "uploaded images too often" in page and 'class="topbar"' in page
    assert not Patient.objects.filter(identifier="LAB-78").exists()


def test_fifty_one_files_get_the_sites_error_page_not_a_traceback(client_for, alice):
    files = [upload(f"s{n}.jpg", smear_bytes(0)) for n in range(51)]
    response = client_for(alice).post(reverse("clinic:case_new"), new_case_form(alice, files))
    page = response.content.decode()
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert 'class="topbar"' in page and "At most 50 images can be uploaded at once" in page
    assert "Traceback" not in page and "TooManyFilesSent" not in page
    assert not Case.objects.exists()


def test_fifty_one_files_from_the_uploader_script_get_its_json_message(client_for, alice):
    files = [upload(f"s{n}.jpg", smear_bytes(0)) for n in range(51)]
    response = client_for(alice).post(
        reverse("clinic:case_new"), new_case_form(alice, files), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    (error,) = response.json()["errors"]["__all__"]
    assert error["code"] == "too_many_files" and "At most 50 images" in error["message"]


def test_fifty_one_files_to_the_api_get_its_json_error(api_for, alice, alice_case):
    files = {f"file{n}": upload(f"s{n}.jpg", smear_bytes(0)) for n in range(51)}
    response = api_for(alice).post(f"/api/cases/{alice_case.pk}/images/", files)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"]["code"] == "too_many_files"
