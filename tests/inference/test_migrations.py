"""The migration that pins cases to a version keeps each case's earliest answer as its
answer (a stray message's later one steps down) and leaves its rows otherwise alone."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("inference", "0004_evaluation_result_help"), ("cases", "0003_withdrawn")]
AFTER = [("inference", "0005_case_analysis_and_claims"), ("cases", "0004_image_claims")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def latest_schema_after():
    """Leave the test database at the newest migrations, as every later test expects (a
    worker process started by a later test reads the same database file)."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_a_case_answered_twice_keeps_its_first_answer_and_is_pinned_to_its_version():
    apps = migrate(BEFORE)
    try:
        Team = apps.get_model("accounts", "Team")
        Patient = apps.get_model("cases", "Patient")
        Case = apps.get_model("cases", "Case")
        ModelVersion = apps.get_model("inference", "ModelVersion")
        CaseResult = apps.get_model("inference", "CaseResult")
        team = Team.objects.create(name="T")
        patient = Patient.objects.create(team=team, identifier="P")
        case = Case.objects.create(patient=patient, team=team, status="analysed")
        v1, v2 = (
            ModelVersion.objects.create(
                name="m",
                version=v,
                architecture="a",
                classes=["A"],
                input_size=32,
                artifact=v,
                content_hash=v,
                manifest={},
            )
            for v in ("1", "2")
        )
        first = CaseResult.objects.create(
            case=case, model_version=v1, label="A", confidence=0.9, probabilities={},
            images_count=1, primary=True,
        )  # fmt: skip
        stray = CaseResult.objects.create(
            case=case, model_version=v2, label="A", confidence=0.8, probabilities={},
            images_count=1, primary=True,
        )  # fmt: skip
        CaseResult.objects.filter(pk=stray.pk).update(created=timezone.now())
    finally:
        apps = migrate(AFTER)
    CaseResult = apps.get_model("inference", "CaseResult")
    CaseAnalysis = apps.get_model("inference", "CaseAnalysis")
    assert CaseResult.objects.get(pk=first.pk).primary
    assert not CaseResult.objects.get(pk=stray.pk).primary
    (analysis,) = CaseAnalysis.objects.filter(case_id=case.pk)
    assert analysis.model_version_id == v1.pk and analysis.requested_by_id is None
