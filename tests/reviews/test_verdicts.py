from http import HTTPStatus
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from cases.models import Case
from inference.models import ModelVersion, Prediction
from inference.services.heatmaps import HEATMAPS_OFF, predictions_heatmap_refuse
from reviews.models import Review, SignOff
from reviews.services import case_sign_off, review_create
from tests.factories import ModelVersionFactory, UserFactory, analysed_case, heatmap_attach


@pytest.fixture
def deployed(db):
    return ModelVersionFactory.create()


@pytest.fixture
def case(deployed):
    # 0.873 prints as "87.3%": a string that only the model's answer can put on the page.
    return analysed_case("Team A", "PAT-7", deployed, label="CML", confidence=0.873)


def test_bob_agrees_signs_off_and_the_case_is_locked(client_for, bob, case):
    client = client_for(bob)
    assert case.status != Case.Status.REVIEWED
    response = client.post(f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "CML"})
    assert response.status_code == HTTPStatus.FOUND
    review = Review.objects.get(case=case)
    assert (review.verdict, review.diagnosis, review.model_label) == ("agree", "CML", "CML")

    assert client.post(f"/reviews/cases/{case.pk}/sign-off/").status_code == HTTPStatus.FOUND
    case.refresh_from_db()
    assert case.status == Case.Status.REVIEWED
    assert SignOff.objects.get(case=case).review == review

    response = client.post(
        f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "AML", "comment": "second look"}
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert Review.objects.filter(case=case).count() == 1
    with pytest.raises(ValidationError, match="signed off"):
        case_sign_off(case=case, reviewer=bob)
    page = client.get(f"/reviews/cases/{case.pk}/")
    assert b"Signed off by bob" in page.content
    assert b'name="diagnosis"' not in page.content
    actions = list(case.audit_events.values_list("action", "detail__event"))
    assert (AuditEvent.Action.REVIEW, "sign_off") in actions


def test_an_override_needs_a_comment_and_a_diagnosis_the_model_knows(bob, case):
    with pytest.raises(ValidationError, match="why"):
        review_create(case=case, reviewer=bob, diagnosis="AML")
    with pytest.raises(ValidationError, match="not a diagnosis"):
        review_create(case=case, reviewer=bob, diagnosis="flu", comment="x")
    review = review_create(case=case, reviewer=bob, diagnosis="inconclusive", comment="smudged")
    assert review.verdict == Review.Verdict.OVERRIDE


def test_a_case_cannot_be_signed_off_without_a_verdict_nor_reviewed_before_analysis(
    bob, deployed, case
):
    with pytest.raises(ValidationError, match="verdict"):
        case_sign_off(case=case, reviewer=bob)
    running = analysed_case("Team A", "PAT-8", deployed, status=Case.Status.ANALYSING)
    with pytest.raises(ValidationError, match="analysed"):
        review_create(case=running, reviewer=bob, diagnosis="AML")


def test_blinded_bob_sees_the_images_but_not_the_answer_until_he_records_a_diagnosis(
    client_for, bob, case
):
    client = client_for(bob)
    assert client.post("/reviews/settings/", {"blinded": "on"}).status_code == HTTPStatus.FOUND
    page = client.get(f"/reviews/cases/{case.pk}/").content.decode()
    image = case.images.get()
    assert f"/images/{image.pk}/" in page
    assert "Record diagnosis" in page
    for leak in ("87.3%", "Model answer", "probbars", "heatmap.png", "Case history"):
        assert leak not in page, leak
    # The queue does not show the answer either.
    queue = client.get("/reviews/").content.decode()
    assert "87.3%" not in queue

    response = client.post(
        f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "AML", "blinded": "1"}
    )
    assert response.status_code == HTTPStatus.FOUND
    review = Review.objects.get(case=case)
    assert review.blinded and review.verdict == Review.Verdict.OVERRIDE
    page = client.get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "Model answer" in page and "87.3%" in page


def test_blinding_can_be_asked_for_one_request(client_for, bob, case):
    client = client_for(bob)
    assert "87.3%" in client.get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "87.3%" not in client.get(f"/reviews/cases/{case.pk}/?blinded=1").content.decode()
    assert "87.3%" not in client.get(f"/reviews/cases/{case.pk}/report/?blinded=1").content.decode()


def test_the_printable_report_has_patient_predictions_verdict_and_sign_off(client_for, bob, case):
    review_create(case=case, reviewer=bob, diagnosis="CML")
    case_sign_off(case=case, reviewer=bob)
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/report/").content.decode()
    for expected in ("PAT-7", "Case report", "87.3%", "cnn 1", "Final diagnosis", "Signed off"):
        assert expected in page, expected
    assert page.count("Research software") == 1  # its own disclaimer, not the site's too


def test_the_clinician_sees_the_signed_off_diagnosis_on_the_page_in_the_api_and_in_print(
    client_for, alice, bob, case
):
    client = client_for(alice)
    assert "Not signed off yet" in client.get(f"/cases/{case.pk}/").content.decode()
    assert client.get(f"/api/cases/{case.pk}/").json()["sign_off"] is None

    review_create(case=case, reviewer=bob, diagnosis="AML", comment="Auer rods seen")
    case_sign_off(case=case, reviewer=bob)

    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Final diagnosis: <strong>AML</strong>, signed off by bob" in page
    assert "overrode the model's CML" in page
    assert "Auer rods seen" in page
    api = client.get(f"/api/cases/{case.pk}/").json()["sign_off"]
    assert {k: api[k] for k in ("diagnosis", "verdict", "model_label", "reviewer", "comment")} == {
        "diagnosis": "AML",
        "verdict": "override",
        "model_label": "CML",
        "reviewer": "bob",
        "comment": "Auer rods seen",
    }
    assert client.get("/api/cases/").json()["results"][0]["sign_off"]["diagnosis"] == "AML"

    heatmap_attach(case.images.get().predictions.get())
    report = client.get(f"/reviews/cases/{case.pk}/report/")
    assert report.status_code == HTTPStatus.OK
    text = report.content.decode()
    for expected in ("PAT-7", "87.3%", "Final diagnosis", "Auer rods seen", "Back to the case"):
        assert expected in text, expected
    assert "heatmap.png" not in text  # a reviewer's aid: bob's copy has it
    reviewer_copy = client_for(bob).get(f"/reviews/cases/{case.pk}/report/")
    assert "heatmap.png" in reviewer_copy.content.decode()


def test_a_blinded_reviewer_does_not_see_anothers_diagnosis_before_recording_theirs(
    client_for, bob, case
):
    review_create(case=case, reviewer=bob, diagnosis="AML", comment="Auer rods seen")
    case_sign_off(case=case, reviewer=bob)
    erin = UserFactory.create(username="erin", role="reviewer", teams=["Team A"])
    client = client_for(erin)
    client.post("/reviews/settings/", {"blinded": "on"})
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Auer rods seen" not in page and "Final diagnosis" not in page
    assert client.get(f"/api/cases/{case.pk}/").json()["sign_off"] is None
    assert client.get("/api/cases/").json()["results"][0]["sign_off"] is None


def test_the_report_styles_print_without_navigation():
    css = (Path(__file__).resolve().parents[2] / "static/css/reviews.css").read_text()
    assert "@media print" in css
    assert ".topbar, .footer, .no-print" in css


def test_a_synthetic_model_carries_a_not_for_clinical_use_banner(client_for, bob, db):
    demo = ModelVersionFactory.create(name="demo", version="1", synthetic=True)
    case = analysed_case("Team A", "P1", demo)
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "Synthetic demo model — not for clinical use" in page


def test_the_shadow_answer_is_shown_to_administrators_only(client_for, bob, admin_user, db):
    deployed = ModelVersionFactory.create()
    shadow = ModelVersionFactory.create(name="cnn", version="2", status=ModelVersion.Status.SHADOW)
    case = analysed_case("Team A", "P1", deployed, label="AML", shadow=(shadow, "CLL"))
    assert (
        "Shadow model answer"
        not in client_for(bob).get(f"/reviews/cases/{case.pk}/").content.decode()
    )
    assert (
        "Shadow model answer"
        in client_for(admin_user).get(f"/reviews/cases/{case.pk}/").content.decode()
    )


def test_blinding_holds_on_every_page_and_endpoint_that_shows_an_answer(client_for, bob, case):
    client = client_for(bob)
    client.post("/reviews/settings/", {"blinded": "on"})
    case_page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "data-blinded" in case_page
    assert "87.3%" not in case_page and "Case prediction" not in case_page
    status = client.get(f"/cases/{case.pk}/status/").json()["html"]
    assert "87.3%" not in status and "data-blinded" in status
    assert "87.3%" not in client.get("/reviews/predictions/").content.decode()
    assert client.get("/cases/").context["page"][0].predicted_label is None
    assert client.get(f"/api/cases/{case.pk}/").json()["result"] is None
    assert client.get("/api/predictions/").json()["count"] == 0

    client.post(f"/reviews/cases/{case.pk}/verdict/", {"diagnosis": "AML", "blinded": "1"})
    assert "Case prediction" in client.get(f"/cases/{case.pk}/").content.decode()
    assert "87.3%" in client.get("/reviews/predictions/").content.decode()
    assert client.get("/cases/").context["page"][0].predicted_label is not None
    assert client.get(f"/api/cases/{case.pk}/").json()["result"] is not None
    assert client.get("/api/predictions/").json()["count"] == 1


def test_signing_off_asks_for_a_confirmation_that_names_the_diagnosis(client_for, bob, case):
    review_create(case=case, reviewer=bob, diagnosis="CML")
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/").content.decode()
    assert 'data-confirm="Sign off case #' in page and "with the diagnosis CML?" in page
    assert "/static/js/confirm.js" in page


def test_the_review_pages_history_shows_clinical_events_and_access_events_on_request(
    client_for, bob, case
):
    client = client_for(bob)
    review_create(case=case, reviewer=bob, diagnosis="CML")
    for _ in range(3):
        client.get(f"/reviews/cases/{case.pk}/")
    page = client.get(f"/reviews/cases/{case.pk}/").content.decode()
    history = page.split("Case history", 1)[1]
    assert "Reviewed" in history and "Viewed" not in history
    assert "Show access events too (4 hidden" in history
    everything = client.get(f"/reviews/cases/{case.pk}/?history=all").content.decode()
    assert "Viewed" in everything.split("Case history", 1)[1]


def test_the_review_page_says_heatmap_pending_until_the_heatmap_worker_attaches_it(
    client_for, bob, case
):
    url = f"/reviews/cases/{case.pk}/"
    page = client_for(bob).get(url).content.decode()
    assert "data-heatmap-pending" in page and "Heatmap overlay" not in page
    heatmap_attach(case.images.get().predictions.get())
    page = client_for(bob).get(url).content.decode()
    assert "data-heatmap-pending" not in page and "Heatmap overlay" in page


def test_the_review_page_says_why_a_prediction_has_no_heatmap(client_for, bob, case):
    predictions_heatmap_refuse(Prediction.objects.all(), HEATMAPS_OFF)
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "data-heatmap-pending" not in page
    assert f"No heatmap: {HEATMAPS_OFF}" in page
