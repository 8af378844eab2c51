"""Clinical records keep every version: a change of clinical notes, a diagnosis or a
verdict keeps the old and the new value and who made it, so the record as it stood at
any moment can be reconstructed (the log used to say only ``{"changed": [...]}``)."""

from http import HTTPStatus

import pytest
from django.utils import timezone

from audit.models import AppendOnly, AuditEvent
from cases import services
from inference.models import CaseResult
from reviews.models import Review
from reviews.services import case_sign_off, review_create
from tests.factories import ModelVersionFactory, analysed_case

pytestmark = pytest.mark.django_db


def test_overwritten_clinical_notes_can_be_reconstructed(alice, alice_patient, api_for):
    """The attack: rewrite a case's notes after the fact to cover a mistake. Every earlier
    text is kept with its time and author, and the case as it stood can be rebuilt."""
    case = services.case_create(user=alice, patient=alice_patient, clinical_notes="fever 38.5")
    written = timezone.now()
    api = api_for(alice)
    response = api.patch(f"/api/cases/{case.pk}/", {"clinical_notes": "afebrile"}, format="json")
    assert response.status_code == HTTPStatus.OK
    services.case_update(user=alice, case=case, clinical_notes="afebrile; splenomegaly")

    assert case.history.as_of(written).clinical_notes == "fever 38.5"
    versions = list(case.history.order_by("history_date", "history_id"))
    assert [v.clinical_notes for v in versions] == [
        "fever 38.5",
        "afebrile",
        "afebrile; splenomegaly",
    ]
    assert [v.history_type for v in versions] == ["+", "~", "~"]
    assert {v.history_user for v in versions} == {alice}

    change = versions[1].diff_against(versions[0])
    (notes,) = [c for c in change.changes if c.field == "clinical_notes"]
    assert (notes.old, notes.new) == ("fever 38.5", "afebrile")
    # The audit event still says what changed; the history holds the values.
    event = AuditEvent.objects.filter(action="change", case=case).first()
    assert event is not None and event.detail == {"changed": ["clinical_notes"]}


def test_a_patients_notes_keep_each_version_with_who_changed_them(alice, alice_patient, bob):
    services.patient_update(user=alice, patient=alice_patient, notes="allergic to penicillin")
    services.patient_update(user=alice, patient=alice_patient, notes="")
    notes = [(v.notes, v.history_user) for v in alice_patient.history.order_by("history_id")]
    assert notes == [("", alice), ("allergic to penicillin", alice), ("", alice)]


def test_a_change_through_the_django_request_names_the_signed_in_user(
    alice, alice_patient, client_for
):
    """No service sets it: the history reads the acting user from the request."""
    response = client_for(alice).post(
        f"/patients/{alice_patient.pk}/edit/",
        {"sex": "F", "year_of_birth": "1970", "notes": "from the ward"},
    )
    assert response.status_code == HTTPStatus.FOUND, response.content[:500]
    latest = alice_patient.history.latest()
    assert (latest.notes, latest.history_user) == ("from the ward", alice)


def test_verdicts_sign_offs_and_the_primary_answer_have_a_history(bob):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "H-1", version, label="CML")
    review = review_create(case=case, reviewer=bob, diagnosis="AML", comment="blasts")
    case_sign_off(case=case, reviewer=bob)

    assert Review.history.get(id=review.pk).diagnosis == "AML"
    assert case.history.latest().status == "reviewed"
    result = CaseResult.objects.get(case=case)
    result.primary = False
    result.save()
    assert [v.primary for v in result.history.order_by("history_id")] == [True, False]


def test_an_admin_reads_old_and_new_notes_in_the_django_admin_and_cannot_edit_them(
    alice, alice_patient, admin_user, client_for
):
    case = services.case_create(user=alice, patient=alice_patient, clinical_notes="fever 38.5")
    services.case_update(user=alice, case=case, clinical_notes="afebrile")
    client = client_for(admin_user)
    page = client.get("/admin/cases/historicalcase/").content.decode()
    assert "clinical_notes: &#x27;fever 38.5&#x27; → &#x27;afebrile&#x27;" in page
    latest = case.history.latest()
    url = f"/admin/cases/historicalcase/{latest.history_id}"
    for path, data in (("change", {"clinical_notes": "x"}), ("delete", {"post": "yes"})):
        assert client.post(f"{url}/{path}/", data).status_code == HTTPStatus.FORBIDDEN
    assert case.history.latest().clinical_notes == "afebrile"


def test_rewriting_or_erasing_an_old_version_is_refused(alice, alice_patient):
    """The attack: edit the history row that holds the old notes."""
    case = services.case_create(user=alice, patient=alice_patient, clinical_notes="fever 38.5")
    services.case_update(user=alice, case=case, clinical_notes="afebrile")
    first = case.history.earliest()
    first.clinical_notes = "afebrile"
    with pytest.raises(AppendOnly):
        first.save()
    with pytest.raises(AppendOnly):
        first.delete()
    assert case.history.earliest().clinical_notes == "fever 38.5"
