"""The audit log is append-only: nothing rewrites or removes an event, through a row, a
bulk query or the Django admin."""

from http import HTTPStatus

import pytest

from audit.models import AppendOnly, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(alice) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=alice, action="view", target_type="cases.case", target_id="1", target_repr="c"
    )


def test_rewriting_an_event_to_name_someone_else_is_refused(event, charlie):
    event.actor = charlie
    with pytest.raises(AppendOnly):
        event.save()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(actor=charlie, actor_username="charlie")
    with pytest.raises(AppendOnly):
        AuditEvent.objects.bulk_update([event], ["actor"])
    event.refresh_from_db()
    assert event.actor_username == "alice"


def test_erasing_an_event_is_refused(event):
    with pytest.raises(AppendOnly):
        event.delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_events_added_in_bulk_keep_the_actors_name(alice):
    AuditEvent.objects.bulk_create(
        [AuditEvent(actor=alice, action="view", target_type="t", target_id="1", target_repr="r")]
    )
    assert AuditEvent.objects.get(target_type="t").actor_username == "alice"


def test_the_django_admin_offers_no_way_to_change_or_delete_an_event(event, admin_user, client_for):
    client = client_for(admin_user)
    url = f"/admin/audit/auditevent/{event.pk}"
    # The change page is a read-only view with no save button; a POST changes nothing.
    page = client.get(f"{url}/change/")
    assert page.status_code == HTTPStatus.OK and 'name="_save"' not in page.content.decode()
    assert client.post(f"{url}/change/", {"target_repr": "x"}).status_code == (HTTPStatus.FORBIDDEN)
    assert client.post(f"{url}/delete/", {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    response = client.post(
        "/admin/audit/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)
    event.refresh_from_db()
    assert event.target_repr == "c"
