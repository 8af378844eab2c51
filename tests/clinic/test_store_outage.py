"""Uploads and downloads when the object store is unreachable or has lost an object: a clear
answer, and nothing half-kept. Against a real S3-protocol server behind a relay that the
tests cut."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from cases.models import Case, Patient, SmearImage
from cases.services import UPLOAD_NOT_STORED
from tests.factories import PredictionFactory, heatmap_attach
from tests.helpers import image_bytes, smear_bytes, upload

pytestmark = pytest.mark.usefixtures("object_store")


def new_case_form(alice, *images) -> dict:
    return {
        "identifier": "LAB-77",
        "team": alice.teams.get().pk,
        "sex": "U",
        "specimen": "peripheral_blood",
        "stain": "wright_giemsa",
        "images": list(images),
        "submit": "on",
    }


def test_an_upload_to_an_unreachable_store_says_so_and_keeps_nothing(
    client_for, alice, object_store, queued
):
    object_store.relay.cut()
    client = client_for(alice)  # the login is audited: count from after it
    audited = AuditEvent.objects.count()

    response = client.post(
        reverse("clinic:case_new"),
        new_case_form(alice, upload("s1.jpg", smear_bytes(0)), upload("s2.jpg", smear_bytes(1))),
    )

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert UPLOAD_NOT_STORED in response.content.decode()
    assert not Patient.objects.exists() and not Case.objects.exists()
    assert not SmearImage.all_objects.exists()
    assert AuditEvent.objects.count() == audited and queued == []
    object_store.relay.restore()
    assert object_store.objects() == []


def test_the_uploader_script_gets_the_message_as_json(client_for, alice, object_store):
    object_store.relay.cut()
    response = client_for(alice).post(
        reverse("clinic:case_new"),
        new_case_form(alice, upload("s1.jpg", smear_bytes(0))),
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["errors"]["__all__"][0]["message"] == UPLOAD_NOT_STORED


def test_images_added_while_the_store_is_down_leave_the_case_as_it_was(
    client_for, alice, alice_case, object_store
):
    kept = sorted(object_store.objects())
    object_store.relay.cut()
    response = client_for(alice).post(
        reverse("clinic:case_images_add", args=[alice_case.pk]),
        {"images": [upload("new.png", image_bytes())]},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert alice_case.images.count() == 2
    object_store.relay.restore()
    assert sorted(object_store.objects()) == kept

    again = client_for(alice).post(
        reverse("clinic:case_images_add", args=[alice_case.pk]),
        {"images": [upload("new.png", image_bytes())]},
        HTTP_ACCEPT="application/json",
    )
    assert again.status_code == HTTPStatus.OK
    assert alice_case.images.count() == 3


def test_an_api_upload_to_an_unreachable_store_is_a_503_in_the_api_shape(
    client_for, alice, alice_case, object_store
):
    object_store.relay.cut()
    response = client_for(alice).post(
        f"/api/cases/{alice_case.pk}/images/",
        {"file": upload("more.png", image_bytes())},
        format="multipart",
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["message"] == UPLOAD_NOT_STORED
    assert alice_case.images.count() == 2


def test_images_stream_from_the_store_behind_the_access_check(
    client_for, alice, charlie, alice_case
):
    image = alice_case.images.first()
    response = client_for(alice).get(reverse("clinic:image_file", args=[image.pk]))
    assert response.status_code == HTTPStatus.OK
    assert b"".join(response.streaming_content) == smear_bytes(0)
    assert client_for(charlie).get(reverse("clinic:image_file", args=[image.pk])).status_code == (
        HTTPStatus.NOT_FOUND
    )


def test_a_download_while_the_store_is_down_is_a_503_page_and_api_error(
    client_for, alice, alice_case, object_store
):
    image = alice_case.images.first()
    object_store.relay.cut()
    client = client_for(alice)
    page = client.get(reverse("clinic:image_thumbnail", args=[image.pk]))
    api = client.get(f"/api/images/{image.pk}/file/")

    assert page.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert "Try again in a few minutes" in page.content.decode()
    assert api.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert api.json()["error"]["code"] == "unavailable"


def test_an_image_whose_object_is_gone_is_not_found(client_for, alice, alice_case, object_store):
    image = alice_case.images.first()
    object_store.client().delete_object(Bucket=object_store.bucket, Key=f"media/{image.file.name}")
    client = client_for(alice)
    assert client.get(reverse("clinic:image_file", args=[image.pk])).status_code == (
        HTTPStatus.NOT_FOUND
    )
    assert client.get(f"/api/images/{image.pk}/file/").status_code == HTTPStatus.NOT_FOUND


def test_a_heatmap_is_read_from_the_store_and_a_dead_store_is_a_503(
    client_for, bob, alice_case, object_store
):
    prediction = heatmap_attach(
        PredictionFactory.create(image=alice_case.images.first()), b"\x89PNG-h"
    )
    assert f"media/{prediction.heatmap.name}" in object_store.objects()
    url = reverse("reviews:heatmap", args=[prediction.pk])
    client = client_for(bob)
    assert b"".join(client.get(url).streaming_content) == b"\x89PNG-h"

    object_store.relay.cut()
    assert client.get(url).status_code == HTTPStatus.SERVICE_UNAVAILABLE
