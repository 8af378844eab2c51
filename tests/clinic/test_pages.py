"""Web pages: what alice, bob, charlie and the admin each see and may do."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from cases import services
from cases.models import Case, Patient
from tests.factories import CaseResultFactory, ModelVersionFactory, PredictionFactory
from tests.helpers import as_uploads, image_bytes, smear_bytes, upload


def test_home_sends_everyone_to_the_case_list(client_for, alice):
    response = client_for(alice).get("/")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("clinic:case_list")


def test_pages_need_a_login(client, alice_case):
    response = client.get(reverse("clinic:case_detail", args=[alice_case.pk]))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(reverse("login"))


def test_alice_opens_a_case_for_a_new_patient_with_dropped_images(client_for, alice, queued):
    response = client_for(alice).post(
        reverse("clinic:case_new"),
        {
            "identifier": "LAB-42",
            "team": alice.teams.get().pk,
            "sex": "F",
            "year_of_birth": "1961",
            "specimen": "bone_marrow",
            "stain": "may_grunwald_giemsa",
            "clinical_notes": "Pancytopenia",
            "images": [upload("s1.jpg", smear_bytes(0)), upload("s2.jpg", smear_bytes(1))],
            "submit": "on",
        },
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == HTTPStatus.OK, response.content
    case = Case.objects.get()
    assert response.json() == {"redirect": reverse("clinic:case_detail", args=[case.pk])}
    assert case.patient.identifier == "LAB-42" and case.specimen == "bone_marrow"
    assert case.images.count() == 2 and case.status == Case.Status.SUBMITTED


def test_a_refused_image_comes_back_as_a_form_error_and_nothing_is_kept(
    client_for, alice, tmp_path
):
    response = client_for(alice).post(
        reverse("clinic:case_new"),
        {
            "identifier": "LAB-43",
            "team": alice.teams.get().pk,
            "sex": "U",
            "specimen": "peripheral_blood",
            "stain": "wright_giemsa",
            "images": [upload("fine.jpg", smear_bytes(0)), upload("page.png", b"<html></html>")],
            "submit": "on",
        },
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    messages = [e["message"] for e in response.json()["errors"]["__all__"]]
    assert any("page.png" in m and "not an image" in m for m in messages)
    assert not Case.objects.exists() and not Patient.objects.exists()


def test_without_javascript_the_form_posts_and_redirects(client_for, alice, alice_patient):
    response = client_for(alice).post(
        reverse("clinic:case_new"),
        {
            "patient": alice_patient.pk,
            "sex": "U",
            "specimen": "peripheral_blood",
            "stain": "wright_giemsa",
        },
    )
    case = Case.objects.get()
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("clinic:case_detail", args=[case.pk])
    assert case.status == Case.Status.DRAFT


def test_the_new_case_page_offers_only_patients_of_alices_teams(client_for, alice, charlie, team_b):
    services.patient_create(user=charlie, team=team_b, identifier="B-SECRET")
    response = client_for(alice).get(reverse("clinic:case_new"))
    assert response.status_code == HTTPStatus.OK
    assert b"B-SECRET" not in response.content
    assert b"js/uploader.js" in response.content


def test_bob_the_reviewer_sees_team_a_cases_but_cannot_open_or_change_them(
    client_for, bob, alice_case
):
    client = client_for(bob)
    assert client.get(reverse("clinic:case_detail", args=[alice_case.pk])).status_code == 200
    assert client.get(reverse("clinic:case_new")).status_code == HTTPStatus.FORBIDDEN
    edit = client.post(
        reverse("clinic:case_edit", args=[alice_case.pk]), {"specimen": "bone_marrow"}
    )
    assert edit.status_code == HTTPStatus.FORBIDDEN


@pytest.mark.parametrize(
    "route", ["case_detail", "case_edit", "case_status", "case_images_add", "case_submit"]
)
def test_charlie_gets_404_for_team_a_case_pages(client_for, charlie, alice_case, route):
    method = "post" if route in ("case_images_add", "case_submit") else "get"
    response = getattr(client_for(charlie), method)(
        reverse(f"clinic:{route}", args=[alice_case.pk])
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_the_admin_sees_every_teams_case(client_for, admin_user, alice_case):
    response = client_for(admin_user).get(reverse("clinic:case_detail", args=[alice_case.pk]))
    assert response.status_code == HTTPStatus.OK


def test_images_are_served_by_a_view_that_checks_access_and_records_the_download(
    client_for, alice, charlie, alice_case
):
    image = alice_case.images.first()
    response = client_for(alice).get(reverse("clinic:image_file", args=[image.pk]))
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"]  # patient data: never kept by a browser
    assert b"".join(response.streaming_content)[:2] == b"\xff\xd8"
    assert AuditEvent.objects.filter(action="download", target_id=str(image.pk)).exists()
    thumb = client_for(alice).get(reverse("clinic:image_thumbnail", args=[image.pk]))
    assert thumb.status_code == HTTPStatus.OK and thumb["Content-Type"] == "image/jpeg"
    for route in ("image_file", "image_thumbnail"):
        outsider = client_for(charlie).get(reverse(f"clinic:{route}", args=[image.pk]))
        assert outsider.status_code == HTTPStatus.NOT_FOUND


def test_the_case_page_shows_images_predictions_bars_and_history(client_for, alice, alice_case):
    deployed = ModelVersionFactory.create()
    image = alice_case.images.first()
    PredictionFactory.create(image=image, model_version=deployed, label="AML")
    CaseResultFactory.create(
        case=alice_case, model_version=deployed, label="AML", needs_review=True
    )
    response = client_for(alice).get(reverse("clinic:case_detail", args=[alice_case.pk]))
    html = response.content.decode()
    assert reverse("clinic:image_thumbnail", args=[image.pk]) in html
    assert "Case prediction: AML" in html and "needs review" in html
    assert 'data-width="70%"' in html  # the case-level bar for AML (static/js/behaviours.js)
    assert 'data-width="91%"' in html  # the image-level bar
    assert "Submitted" in html and "Created" in html  # history
    assert AuditEvent.objects.filter(action="view", case=alice_case, actor=alice).exists()


def test_shadow_model_results_are_never_shown_to_clinicians(client_for, alice, alice_case):
    ModelVersionFactory.create(name="deployed-cnn", status="deployed")
    shadow = ModelVersionFactory.create(name="shadow-cnn", status="shadow")
    CaseResultFactory.create(case=alice_case, model_version=shadow, label="CLL", primary=False)
    PredictionFactory.create(image=alice_case.images.first(), model_version=shadow, label="CLL")
    html = client_for(alice).get(reverse("clinic:case_detail", args=[alice_case.pk])).content
    assert b"CLL (" not in html and b"Case prediction" not in html
    listing = client_for(alice).get(reverse("clinic:case_list") + "?predicted=CLL")
    assert listing.context["page"].paginator.count == 0


def test_the_status_endpoint_returns_the_fresh_analysis_section(client_for, alice, alice_case):
    response = client_for(alice).get(reverse("clinic:case_status", args=[alice_case.pk]))
    body = response.json()
    assert body["status"] == "submitted" and body["active"] is True
    assert "smear-1.jpg" in body["html"]


def test_alice_adds_images_to_her_case_and_a_duplicate_is_refused(client_for, alice, alice_case):
    client = client_for(alice)
    url = reverse("clinic:case_images_add", args=[alice_case.pk])
    added = client.post(
        url, {"images": [upload("new.png", image_bytes())]}, HTTP_ACCEPT="application/json"
    )
    assert added.status_code == HTTPStatus.OK
    again = client.post(
        url, {"images": [upload("dup.jpg", smear_bytes(0))]}, HTTP_ACCEPT="application/json"
    )
    assert again.status_code == HTTPStatus.BAD_REQUEST
    assert "already in this case" in again.json()["errors"]["__all__"][0]["message"]
    assert alice_case.images.count() == 3


def test_alice_edits_the_case_and_the_change_is_recorded(client_for, alice, alice_case):
    response = client_for(alice).post(
        reverse("clinic:case_edit", args=[alice_case.pk]),
        {"specimen": "bone_marrow", "stain": "giemsa", "clinical_notes": "Repeat sample"},
    )
    assert response.status_code == HTTPStatus.FOUND
    alice_case.refresh_from_db()
    assert alice_case.stain == "giemsa"
    event = AuditEvent.objects.get(action="change", case=alice_case)
    assert event.detail == {"changed": ["clinical_notes", "specimen", "stain"]}


def test_the_patient_page_lists_the_patients_cases_over_time(
    client_for, alice, alice_patient, alice_case
):
    other = services.case_create(user=alice, patient=alice_patient)
    response = client_for(alice).get(reverse("clinic:patient_detail", args=[alice_patient.pk]))
    assert list(response.context["cases"]) == [other, alice_case]
    assert AuditEvent.objects.filter(action="view", target_type="cases.patient").exists()


def test_alice_creates_and_edits_a_patient(client_for, alice):
    client = client_for(alice)
    created = client.post(
        reverse("clinic:patient_new"),
        {"team": alice.teams.get().pk, "identifier": "P-9", "sex": "M", "year_of_birth": "1980"},
    )
    patient = Patient.objects.get()
    assert created["Location"] == reverse("clinic:patient_detail", args=[patient.pk])
    client.post(
        reverse("clinic:patient_edit", args=[patient.pk]), {"sex": "M", "notes": "CLL follow-up"}
    )
    patient.refresh_from_db()
    assert patient.notes == "CLL follow-up" and patient.identifier == "P-9"


class TestCaseList:
    @pytest.fixture
    def cases(self, alice, bob, alice_patient, team_a):
        deployed = ModelVersionFactory.create()
        other = services.patient_create(user=alice, team=team_a, identifier="B-777")
        first = services.case_create(user=alice, patient=alice_patient)
        second = services.case_create(
            user=alice, patient=other, uploads=as_uploads(("a.png", image_bytes())), submit=True
        )
        third = services.case_create(user=alice, patient=other)
        Case.objects.filter(pk=third.pk).update(submitted_by=bob, created="2020-03-01T10:00Z")
        CaseResultFactory.create(case=second, model_version=deployed, label="AML")
        CaseResultFactory.create(case=first, model_version=deployed, label="CLL")
        return first, second, third

    def listed(self, client, query: str = "") -> list[int]:
        response = client.get(reverse("clinic:case_list") + query)
        assert response.status_code == HTTPStatus.OK
        return [case.pk for case in response.context["page"].object_list]

    def test_filters_by_status_prediction_date_mine_and_identifier(self, client_for, alice, cases):
        first, second, third = cases
        client = client_for(alice)
        assert self.listed(client) == [second.pk, first.pk, third.pk]
        assert self.listed(client, "?status=submitted") == [second.pk]
        assert self.listed(client, "?predicted=AML") == [second.pk]
        assert self.listed(client, "?created_to=2020-12-31") == [third.pk]
        assert self.listed(client, "?created_from=2021-01-01") == [second.pk, first.pk]
        assert self.listed(client, "?mine=on") == [second.pk, first.pk]
        assert self.listed(client, "?q=b-7") == [second.pk, third.pk]

    def test_charlie_sees_none_of_team_a_cases(self, client_for, charlie, cases):
        assert self.listed(client_for(charlie)) == []

    def test_a_page_costs_the_same_number_of_queries_with_many_more_cases(
        self, client_for, alice, cases, alice_patient, django_assert_max_num_queries
    ):
        client = client_for(alice)
        client.get(reverse("clinic:case_list"))  # warm the session and user lookups

        def page_queries() -> int:
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as ctx:
                client.get(reverse("clinic:case_list") + "?page=1")
            return len(ctx.captured_queries)

        few = page_queries()
        deployed = ModelVersionFactory.create(name="second-model", status="registered")
        for n in range(30):
            case = services.case_create(
                user=alice,
                patient=alice_patient,
                uploads=as_uploads((f"{n}.png", image_bytes(color=(n, 1, 2)))),
            )
            CaseResultFactory.create(case=case, model_version=deployed, label="ALL")
        many = page_queries()
        assert many == few
        with django_assert_max_num_queries(8):
            response = client.get(reverse("clinic:case_list") + "?page=2&predicted=ALL")
        assert len(response.context["page"].object_list) == 5


def test_the_case_list_shows_no_subtype_when_every_image_was_out_of_scope(
    client_for, alice, alice_case
):
    deployed = ModelVersionFactory.create()
    result = CaseResultFactory.create(case=alice_case, model_version=deployed, label="AML")
    listing = client_for(alice).get(reverse("clinic:case_list")).content.decode()
    assert "AML" in listing and "out of scope" not in listing
    result.out_of_scope_count = result.images_count
    result.save(update_fields=["out_of_scope_count"])
    listing = client_for(alice).get(reverse("clinic:case_list")).content.decode()
    assert "out of scope" in listing and "AML <span" not in listing


def test_the_case_list_shows_the_signed_off_diagnosis_first_and_confidence_as_a_percentage(
    client_for, alice, bob, alice_case
):
    from reviews.services import case_sign_off, review_create

    deployed = ModelVersionFactory.create()
    other = services.case_create(
        user=alice, patient=alice_case.patient, uploads=as_uploads(("b.png", image_bytes()))
    )
    Case.objects.filter(pk__in=[alice_case.pk, other.pk]).update(status=Case.Status.ANALYSED)
    CaseResultFactory.create(case=alice_case, model_version=deployed, label="AML")
    CaseResultFactory.create(case=other, model_version=deployed, label="CLL", confidence=0.5)
    review_create(case=alice_case, reviewer=bob, diagnosis="CML", comment="blasts absent")
    case_sign_off(case=alice_case, reviewer=bob)
    page = client_for(alice).get("/cases/").content.decode()
    assert "<strong data-diagnosis>CML</strong>" in page and "signed off" in page
    assert "AML <span" not in page  # the model's answer gives way to the diagnosis
    assert 'CLL <span class="muted">50.0%</span>' in page


def test_logging_out_says_so_on_the_login_page(client_for, alice):
    client = client_for(alice)
    page = client.post("/logout/", follow=True).content.decode()
    assert "You have been logged out." in page and 'id="id_username"' in page


def test_every_page_names_its_icon_so_browsers_do_not_ask_for_favicon_ico(
    client_for, alice, admin_user
):
    for page in (
        client_for(alice).get("/cases/").content.decode(),
        client_for(admin_user).get("/admin/").content.decode(),
    ):
        assert 'rel="icon" href="/static/img/favicon.svg"' in page
