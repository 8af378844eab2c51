"""Withdrawing from the case page and the API, and the case history's access filter."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from cases import services
from cases.models import Case, SmearImage
from tests.helpers import as_uploads, smear_bytes


@pytest.fixture
def alice_draft(alice, alice_patient) -> Case:
    return services.case_create(
        user=alice,
        patient=alice_patient,
        uploads=as_uploads(("smear-1.jpg", smear_bytes(0)), ("smear-2.jpg", smear_bytes(1))),
    )


def test_the_draft_page_offers_withdrawal_with_a_confirmation(client_for, alice, alice_draft):
    page = client_for(alice).get(reverse("clinic:case_detail", args=[alice_draft.pk])).content
    for image in alice_draft.images.all():
        assert reverse("clinic:image_withdraw", args=[image.pk]).encode() in page
    assert reverse("clinic:case_withdraw", args=[alice_draft.pk]).encode() in page
    assert b"data-confirm=" in page and b"js/confirm.js" in page
    assert b"onclick" not in page and b"onsubmit" not in page


def test_a_submitted_case_page_offers_no_withdrawal(client_for, alice, alice_case):
    page = client_for(alice).get(reverse("clinic:case_detail", args=[alice_case.pk])).content
    assert b"/withdraw/" not in page


def test_alice_withdraws_an_image_from_the_page(client_for, alice, alice_draft):
    first, second = alice_draft.images.all()
    client = client_for(alice)
    response = client.post(reverse("clinic:image_withdraw", args=[first.pk]), follow=True)
    assert response.status_code == HTTPStatus.OK
    assert [i.pk for i in response.context["images"]] == [second.pk]
    assert b"smear-1.jpg withdrawn from the case." in response.content
    history = [(e.get_action_display(), e.target_repr) for e in response.context["history"]]
    assert ("Withdrawn", "smear-1.jpg") in history
    # Its file is no longer served as one of the case's images.
    assert client.get(reverse("clinic:image_file", args=[first.pk])).status_code == 404


def test_withdrawing_after_submission_is_refused_with_the_reason(client_for, alice, alice_case):
    image = alice_case.images.first()
    assert image is not None
    response = client_for(alice).post(
        reverse("clinic:image_withdraw", args=[image.pk]), follow=True
    )
    assert b"once analysis has started nothing can be withdrawn" in response.content
    assert SmearImage.objects.filter(pk=image.pk).exists()


def test_outsider_gets_404_and_reviewer_403(client_for, charlie, bob, alice_draft):
    image = alice_draft.images.first()
    assert image is not None
    urls = [
        reverse("clinic:image_withdraw", args=[image.pk]),
        reverse("clinic:case_withdraw", args=[alice_draft.pk]),
    ]
    for url in urls:
        assert client_for(charlie).post(url).status_code == HTTPStatus.NOT_FOUND
        assert client_for(bob).post(url).status_code == HTTPStatus.FORBIDDEN
    assert SmearImage.objects.filter(case=alice_draft).count() == 2
    assert Case.objects.get(pk=alice_draft.pk).withdrawn is None


def test_an_admin_may_withdraw_a_teams_draft(client_for, admin_user, alice_draft):
    response = client_for(admin_user).post(reverse("clinic:case_withdraw", args=[alice_draft.pk]))
    assert response.status_code == HTTPStatus.FOUND
    assert Case.objects.get(pk=alice_draft.pk).withdrawn_by == admin_user


def test_a_withdrawn_draft_is_gone_from_the_lists_and_says_so_at_its_url(
    client_for, alice, charlie, alice_draft
):
    client = client_for(alice)
    response = client.post(reverse("clinic:case_withdraw", args=[alice_draft.pk]))
    assert response["Location"] == reverse("clinic:case_list")
    assert alice_draft not in list(client.get(reverse("clinic:case_list")).context["page"])
    patient_page = client.get(reverse("clinic:patient_detail", args=[alice_draft.patient_id]))
    assert list(patient_page.context["cases"]) == []
    detail = client.get(reverse("clinic:case_detail", args=[alice_draft.pk]))
    assert detail.status_code == HTTPStatus.GONE
    assert b"was withdrawn by alice" in detail.content
    outsider = client_for(charlie).get(reverse("clinic:case_detail", args=[alice_draft.pk]))
    assert outsider.status_code == HTTPStatus.NOT_FOUND


def test_the_history_hides_access_events_unless_asked(client_for, alice, alice_draft):
    client = client_for(alice)
    url = reverse("clinic:case_detail", args=[alice_draft.pk])
    image = alice_draft.images.first()
    assert image is not None
    client.get(url)
    client.get(reverse("clinic:image_file", args=[image.pk]))
    response = client.get(url)
    actions = {e.action for e in response.context["history"]}
    assert AuditEvent.Action.CREATE in actions
    assert not actions & {AuditEvent.Action.VIEW, AuditEvent.Action.DOWNLOAD}
    # Two views before this one and one download; this page's own view is recorded too.
    assert response.context["history_access_hidden"] == 3
    assert b"Show access events too (3 hidden" in response.content
    everything = client.get(url, {"history": "all"})
    actions = {e.action for e in everything.context["history"]}
    assert {AuditEvent.Action.VIEW, AuditEvent.Action.DOWNLOAD} <= actions
    assert b"Clinical events only" in everything.content


def test_the_api_withdraws_an_image_then_the_case(api_for, alice, alice_draft):
    api = api_for(alice)
    first, second = alice_draft.images.all()
    response = api.post(f"/api/images/{first.pk}/withdraw/")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["withdrawn"] and response.json()["withdrawn_by"] == "alice"
    listed = api.get(f"/api/cases/{alice_draft.pk}/images/").json()
    assert [i["id"] for i in listed] == [second.pk]
    response = api.post(f"/api/cases/{alice_draft.pk}/withdraw/")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["withdrawn_by"] == "alice"
    assert api.get(f"/api/cases/{alice_draft.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert api.get("/api/cases/").json()["count"] == 0


def test_the_api_refuses_after_submission_and_keeps_access_rules(
    api_for, alice, bob, charlie, alice_case
):
    as_alice, as_bob, as_charlie = api_for(alice), api_for(bob), api_for(charlie)
    image = alice_case.images.first()
    assert image is not None
    refused = as_alice.post(f"/api/images/{image.pk}/withdraw/")
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    assert "once analysis has started" in refused.json()["error"]["message"]
    case_url = f"/api/cases/{alice_case.pk}/withdraw/"
    assert as_alice.post(case_url).status_code == HTTPStatus.BAD_REQUEST
    assert as_charlie.post(case_url).status_code == HTTPStatus.NOT_FOUND
    assert as_bob.post(case_url).status_code == HTTPStatus.FORBIDDEN
    image_url = f"/api/images/{image.pk}/withdraw/"
    assert as_charlie.post(image_url).status_code == HTTPStatus.NOT_FOUND
    assert as_bob.post(image_url).status_code == HTTPStatus.FORBIDDEN


def test_the_schema_documents_both_withdrawals(api_for, alice):
    paths = api_for(alice).get("/api/schema/", {"format": "json"}).json()["paths"]
    for path in ("/api/images/{id}/withdraw/", "/api/cases/{id}/withdraw/"):
        post = paths[path]["post"]
        assert post["summary"].startswith("Withdraw") and {"200", "400", "403", "404"} <= set(
            post["responses"]
        )
