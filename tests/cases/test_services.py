"""Writes: all or nothing, committed before queued, audited."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from audit.models import AuditEvent
from cases import services
from cases.models import Case, Patient, SmearImage
from tests.helpers import as_uploads, image_bytes, smear_bytes, stored_files


def test_a_case_with_real_smears_stores_rows_files_and_hashes_then_queues_it(
    alice, alice_patient, django_capture_on_commit_callbacks, queued, tmp_path
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        case = services.case_create(
            user=alice,
            patient=alice_patient,
            uploads=as_uploads(("a.jpg", smear_bytes(0)), ("b.jpg", smear_bytes(1))),
            submit=True,
        )
        # Nothing is queued inside the transaction: a worker could not see the rows yet.
        assert queued == []
    for callback in callbacks:
        callback()
    assert queued == [case.pk]
    assert case.status == Case.Status.SUBMITTED and case.team_id == alice_patient.team_id
    images = list(case.images.all())
    assert [i.original_name for i in images] == ["a.jpg", "b.jpg"]
    assert all(i.status == SmearImage.Status.PENDING and len(i.sha256) == 64 for i in images)
    assert len(stored_files(tmp_path)) == 4  # two images, two thumbnails
    for image in images:
        assert image.file.name and "a.jpg" not in image.file.name  # stored under a generated name
        assert image.file.read() != b""


def test_a_draft_is_not_queued_until_it_is_submitted(
    alice, alice_patient, django_capture_on_commit_callbacks, queued
):
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_create(
            user=alice, patient=alice_patient, uploads=as_uploads(("a.jpg", smear_bytes(0)))
        )
    assert case.status == Case.Status.DRAFT and queued == []
    with django_capture_on_commit_callbacks(execute=True):
        services.case_submit(user=alice, case=case)
    assert queued == [case.pk]


def test_a_bad_image_later_in_the_request_leaves_no_case_patient_row_or_file(
    alice, team_a, tmp_path, queued
):
    uploads = as_uploads(
        ("good-1.jpg", smear_bytes(0)),
        ("good-2.jpg", smear_bytes(1)),
        ("bad.jpg", smear_bytes(2)[:5000]),
    )
    with pytest.raises(ValidationError, match=r"bad\.jpg"):
        services.case_create(
            user=alice,
            new_patient={"team": team_a, "identifier": "NEW-1"},
            uploads=uploads,
            submit=True,
        )
    assert not Patient.objects.exists()
    assert not Case.objects.exists()
    assert not SmearImage.objects.exists()
    assert stored_files(tmp_path) == []
    assert queued == []


def test_a_failure_after_files_were_stored_removes_them(alice, alice_case, tmp_path, monkeypatch):
    before = set(stored_files(tmp_path))

    def broken_audit(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        services.case_images_add(
            user=alice, case=alice_case, uploads=as_uploads(("c.jpg", smear_bytes(2)))
        )
    assert set(stored_files(tmp_path)) == before
    assert alice_case.images.count() == 2


def test_an_image_already_in_the_case_is_refused(alice, alice_case, tmp_path):
    before = set(stored_files(tmp_path))
    with pytest.raises(ValidationError, match="already in this case"):
        services.case_images_add(
            user=alice,
            case=alice_case,
            uploads=as_uploads(("new.jpg", smear_bytes(2)), ("again.jpg", smear_bytes(0))),
        )
    assert alice_case.images.count() == 2
    assert set(stored_files(tmp_path)) == before


def test_the_same_image_twice_in_one_request_is_refused(alice, alice_patient):
    with pytest.raises(ValidationError, match="same image"):
        services.case_create(
            user=alice,
            patient=alice_patient,
            uploads=as_uploads(("a.jpg", smear_bytes(0)), ("copy.jpg", smear_bytes(0))),
        )


def test_the_same_image_may_be_in_two_cases(alice, alice_patient, alice_case):
    other = services.case_create(
        user=alice, patient=alice_patient, uploads=as_uploads(("a.jpg", smear_bytes(0)))
    )
    assert other.images.get().sha256 == alice_case.images.first().sha256


def test_adding_images_to_an_analysed_case_sends_it_back_to_the_workers(
    alice, alice_case, django_capture_on_commit_callbacks, queued
):
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.ANALYSED)
    alice_case.refresh_from_db()
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.case_images_add(
            user=alice, case=alice_case, uploads=as_uploads(("c.png", image_bytes()))
        )
    alice_case.refresh_from_db()
    assert alice_case.status == Case.Status.SUBMITTED
    assert queued == [alice_case.pk]


def test_a_reviewed_case_can_no_longer_be_changed(alice, alice_case):
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.REVIEWED)
    alice_case.refresh_from_db()
    with pytest.raises(PermissionDenied):
        services.case_update(user=alice, case=alice_case, clinical_notes="late edit")
    with pytest.raises(PermissionDenied):
        services.case_images_add(
            user=alice, case=alice_case, uploads=as_uploads(("c.png", image_bytes()))
        )


def test_submitting_needs_an_image(alice, alice_patient):
    case = services.case_create(user=alice, patient=alice_patient)
    with pytest.raises(ValidationError, match="at least one image"):
        services.case_submit(user=alice, case=case)


def test_patient_identifiers_are_unique_within_a_team_only(alice, charlie, team_a, team_b):
    services.patient_create(user=alice, team=team_a, identifier="P-1")
    services.patient_create(user=charlie, team=team_b, identifier="P-1")
    with pytest.raises(ValidationError, match="already has a patient"):
        services.patient_create(user=alice, team=team_a, identifier=" P-1 ")


def test_every_write_is_in_the_audit_log(alice, alice_case, alice_patient):
    services.case_update(user=alice, case=alice_case, clinical_notes="Blasts 30%")
    services.patient_update(user=alice, patient=alice_patient, notes="Follow-up")
    events = set(AuditEvent.objects.filter(actor=alice).values_list("action", "target_type"))
    assert events >= {
        ("create", "cases.patient"),
        ("create", "cases.case"),
        ("create", "cases.smearimage"),
        ("submit", "cases.case"),
        ("change", "cases.case"),
        ("change", "cases.patient"),
    }
    change = AuditEvent.objects.get(action="change", target_type="cases.case")
    assert change.detail == {"changed": ["clinical_notes"]}
    assert change.case == alice_case


def test_the_patient_identifier_cannot_be_changed(alice, alice_patient):
    with pytest.raises(TypeError):
        services.patient_update(user=alice, patient=alice_patient, identifier="other")
