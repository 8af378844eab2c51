"""A case submitted while a deploy commits is pinned in the deploy's order: its analysis
row never carries a time after the deploy's event with the version from before it."""

import threading
import time

import pytest
from django.db import connection, transaction

from inference.models import CaseAnalysis, DeploymentEvent, ModelVersion
from inference.services.locks import deployment_lock
from inference.services.registry import model_version_deploy
from inference.services.versions import case_analysis_pin
from tests.factories import CaseFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgresql(db):
    if connection.vendor != "postgresql":
        pytest.skip("the deployment lock is PostgreSQL's; SQLite orders writers by itself")


def test_a_pin_during_a_deploy_waits_for_it_and_takes_the_new_version(postgresql):
    old = ModelVersionFactory.create(version="1")
    new = ModelVersionFactory.create(version="2", status=ModelVersion.Status.REGISTERED)
    case = CaseFactory.create()
    locked, failures = threading.Event(), []

    def deploy_slowly():
        try:
            with transaction.atomic():
                deployment_lock(exclusive=True)
                locked.set()
                time.sleep(0.5)  # a deploy committing while the case is submitted
                model_version_deploy(model_version=new, actor=None, reason="in order")
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            connection.close()

    deploying = threading.Thread(target=deploy_slowly)
    deploying.start()
    assert locked.wait(5)
    started = time.monotonic()
    pinned = case_analysis_pin(case_id=case.pk)
    waited = time.monotonic() - started
    deploying.join(10)
    assert not failures
    assert pinned == new and pinned != old
    assert waited > 0.3  # it waited for the deploy instead of reading the version before it
    event = DeploymentEvent.objects.get(model_version=new, action="deploy")
    assert CaseAnalysis.objects.get(case=case).created >= event.created
