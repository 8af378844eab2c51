"""Withdrawing an image or a draft uploaded by mistake: kept on record, never analysed."""

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from audit.models import AuditEvent
from cases import selectors, services
from cases.models import Case, SmearImage
from tests.factories import CaseFactory, SmearImageFactory
from tests.helpers import as_uploads, smear_bytes


@pytest.fixture
def alice_draft(alice, alice_patient) -> Case:
    """A draft of Team A with two real smears."""
    return services.case_create(
        user=alice,
        patient=alice_patient,
        uploads=as_uploads(("smear-1.jpg", smear_bytes(0)), ("smear-2.jpg", smear_bytes(1))),
    )


def test_alice_withdraws_a_draft_image_and_row_file_and_audit_stay(alice, alice_draft):
    first, second = alice_draft.images.all()
    services.smear_image_withdraw(user=alice, image=first)
    assert list(alice_draft.images.all()) == [second]
    kept = SmearImage.all_objects.get(pk=first.pk)
    assert kept.withdrawn is not None and kept.withdrawn_by == alice
    assert kept.file.name and kept.file.storage.exists(kept.file.name)
    event = AuditEvent.objects.get(action=AuditEvent.Action.WITHDRAW)
    assert (event.actor, event.case, event.target_id) == (alice, alice_draft, str(first.pk))
    assert event.target_type == "cases.smearimage"


@pytest.mark.parametrize(
    "status", [s for s in Case.Status.values if s != Case.Status.DRAFT], ids=str
)
def test_nothing_is_withdrawn_once_analysis_has_started(alice, team_a, status):
    case = CaseFactory.create(patient__team=team_a, status=status)
    image = SmearImageFactory.create(case=case)
    with pytest.raises(ValidationError, match=f"already {Case.Status(status).label.lower()}"):
        services.smear_image_withdraw(user=alice, image=image)
    with pytest.raises(ValidationError, match="once analysis has started"):
        services.case_withdraw(user=alice, case=case)
    assert SmearImage.objects.filter(pk=image.pk).exists()
    assert Case.objects.get(pk=case.pk).withdrawn is None
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.WITHDRAW).exists()


def test_an_image_is_withdrawn_once(alice, alice_draft):
    image = alice_draft.images.first()
    assert image is not None
    services.smear_image_withdraw(user=alice, image=image)
    with pytest.raises(ValidationError, match="already withdrawn"):
        services.smear_image_withdraw(user=alice, image=image)


def test_the_same_file_may_be_uploaded_again_after_its_withdrawal(alice, alice_draft):
    first = alice_draft.images.get(original_name="smear-1.jpg")
    with pytest.raises(ValidationError, match="already in this case"):
        services.case_images_add(
            user=alice, case=alice_draft, uploads=as_uploads(("again.jpg", smear_bytes(0)))
        )
    services.smear_image_withdraw(user=alice, image=first)
    (again,) = services.case_images_add(
        user=alice, case=alice_draft, uploads=as_uploads(("again.jpg", smear_bytes(0)))
    )
    assert again.sha256 == first.sha256
    assert sorted(i.original_name for i in alice_draft.images.all()) == ["again.jpg", "smear-2.jpg"]
    assert SmearImage.all_objects.filter(case=alice_draft).count() == 3


def test_withdrawn_images_do_not_count_toward_submitting(alice, alice_patient):
    draft = services.case_create(
        user=alice, patient=alice_patient, uploads=as_uploads(("only.jpg", smear_bytes(0)))
    )
    only = draft.images.get()
    services.smear_image_withdraw(user=alice, image=only)
    with pytest.raises(ValidationError, match="Add at least one image"):
        services.case_submit(user=alice, case=draft)
    assert Case.objects.get(pk=draft.pk).status == Case.Status.DRAFT


def test_a_withdrawn_draft_leaves_the_lists_but_stays_on_record(alice, alice_draft):
    services.case_withdraw(user=alice, case=alice_draft)
    assert not selectors.case_list(user=alice).exists()
    assert not selectors.case_list(
        user=alice, filters=selectors.CaseFilters(patient_id=alice_draft.patient_id)
    ).exists()
    assert not selectors.image_list(user=alice).exists()
    kept = Case.objects.get(pk=alice_draft.pk)
    assert kept.withdrawn is not None and kept.withdrawn_by == alice
    assert selectors.case_get_withdrawn(user=alice, pk=kept.pk) == kept
    event = AuditEvent.objects.get(action=AuditEvent.Action.WITHDRAW)
    assert (event.actor, event.case, event.target_type) == (alice, kept, "cases.case")


def test_a_withdrawn_draft_can_be_neither_submitted_nor_added_to(alice, alice_draft):
    services.case_withdraw(user=alice, case=alice_draft)
    with pytest.raises(ValidationError, match="withdrawn"):
        services.case_submit(user=alice, case=alice_draft)
    with pytest.raises(ValidationError, match="withdrawn"):
        services.case_images_add(
            user=alice, case=alice_draft, uploads=as_uploads(("c.jpg", smear_bytes(2)))
        )
    with pytest.raises(ValidationError, match="already withdrawn"):
        services.case_withdraw(user=alice, case=alice_draft)


def test_the_image_count_of_the_case_list_leaves_withdrawn_images_out(alice, alice_draft):
    services.smear_image_withdraw(user=alice, image=alice_draft.images.all()[0])
    assert selectors.case_get(user=alice, pk=alice_draft.pk).images_count == 1  # type: ignore[attr-defined]


def test_an_outsider_finds_no_withdrawn_case_either(charlie, alice, alice_draft):
    services.case_withdraw(user=alice, case=alice_draft)
    with pytest.raises(Http404):
        selectors.case_get_withdrawn(user=charlie, pk=alice_draft.pk)
