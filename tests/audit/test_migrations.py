"""The migration that keeps actors copies each past event's actor's username beside it,
so that the log names people even without a join (and a future export keeps them)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

ACCOUNTS = ("accounts", "0003_user_manager_validates_passwords")
BEFORE = [("audit", "0004_auditevent_sign_in_actions"), ACCOUNTS]
AFTER = [("audit", "0005_actor_kept"), ACCOUNTS]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def latest_schema_after():
    """Leave the test database at the newest migrations, as every later test expects."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_past_events_get_their_actors_username_and_system_events_stay_nameless():
    apps = migrate(BEFORE)
    User = apps.get_model("accounts", "User")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    alice = User.objects.create(username="alice")
    bob = User.objects.create(username="bob")
    for actor in (alice, bob, None):
        AuditEvent.objects.create(
            actor=actor, action="view", target_type="cases.case", target_id="1", target_repr="c"
        )

    apps = migrate(AFTER)
    AuditEvent = apps.get_model("audit", "AuditEvent")
    names = sorted(AuditEvent.objects.values_list("actor_id", "actor_username"), key=str)
    assert names == sorted([(alice.pk, "alice"), (bob.pk, "bob"), (None, "")], key=str)
