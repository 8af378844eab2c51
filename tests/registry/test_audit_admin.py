"""The audit log in the Django admin names each registry change by what it did (all are
audited as ``deploy``) and its search finds them by that name."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from audit.admin import AuditEventAdmin
from audit.models import AuditEvent
from inference.services.registry import (
    model_version_deploy,
    model_version_retire,
    model_version_rollback,
    model_version_set_shadow,
)
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audit_auditevent_changelist")


@pytest.fixture
def registry_changes(admin_user):
    first = ModelVersionFactory.create(version="1", status="registered")
    second = ModelVersionFactory.create(version="2", status="registered")
    third = ModelVersionFactory.create(version="3", status="registered")
    model_version_deploy(model_version=first, actor=admin_user, reason="first")
    model_version_deploy(model_version=second, actor=admin_user, reason="better")
    model_version_set_shadow(model_version=third, actor=admin_user, reason="watch it")
    model_version_rollback(actor=admin_user, reason="worse on site")
    model_version_retire(model_version=third, actor=admin_user, reason="done watching")
    AuditEvent.objects.create(
        actor=admin_user, action="view", target_type="cases.case", target_id="1", target_repr="c"
    )
    return AuditEvent.objects.filter(action=AuditEvent.Action.DEPLOY)


def test_each_registry_change_is_listed_by_its_own_name(client_for, admin_user, registry_changes):
    names = [AuditEventAdmin.event(None, e) for e in registry_changes.order_by("pk")]  # type: ignore[arg-type]
    assert names == ["Deploy", "Deploy", "Set as shadow", "Roll back", "Retire"]
    assert AuditEventAdmin.event(None, AuditEvent.objects.get(action="view")) == "Viewed"  # type: ignore[arg-type]

    page = client_for(admin_user).get(CHANGELIST)
    assert page.status_code == HTTPStatus.OK
    html = page.content.decode()
    for name in ("Set as shadow", "Roll back", "Retire", "Viewed"):
        assert f'<td class="field-event">{name}</td>' in html
    assert '<td class="field-event">Deployed</td>' not in html


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("rollback", 1),
        ("roll back", 1),
        ("shadow", 1),
        ("retire", 1),
        ("deploy", 5),  # every registry change is a deploy-type audit entry
        ("viewed", 1),
    ],
)
def test_the_search_finds_registry_changes_by_name(
    client_for, admin_user, registry_changes, term, expected
):
    response = client_for(admin_user).get(CHANGELIST, {"q": term})
    assert response.status_code == HTTPStatus.OK
    assert response.context["cl"].result_count == expected


def test_the_search_keeps_the_list_filters(client_for, admin_user, registry_changes):
    response = client_for(admin_user).get(CHANGELIST, {"q": "viewed", "action__exact": "deploy"})
    assert response.context["cl"].result_count == 0


def test_the_log_stays_read_only_and_admins_only(client_for, admin_user, alice, registry_changes):
    event = registry_changes.first()
    assert event is not None
    client = client_for(admin_user)
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == HTTPStatus.FORBIDDEN
    delete = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert client.post(delete, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert client_for(alice).get(CHANGELIST).status_code == HTTPStatus.FOUND
