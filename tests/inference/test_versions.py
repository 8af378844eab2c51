"""A case's answer is made once, by the version deployed when it was submitted; another
version analyses it only on an administrator's explicit, audited request, and a deploy,
a rollback or a stray message never changes which answer a case shows."""

from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from cases import services as case_services
from cases.models import Case, SmearImage
from inference import selectors
from inference.models import CaseAnalysis, CaseResult, ModelVersion, Prediction
from inference.services import analysis
from inference.services.registry import (
    model_version_deploy,
    model_version_import,
    model_version_retire,
    model_version_rollback,
)
from inference.services.versions import case_reanalysis_request
from inference.tasks import analyse_case
from tests.helpers import as_uploads, noise_png

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def v1(artifacts) -> ModelVersion:
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="first")
    return version


@pytest.fixture
def v2(artifacts, v1) -> ModelVersion:
    """Registered, not deployed."""
    return model_version_import(source=artifacts["v2"])


def submit(user, patient, *seeds: int) -> Case:
    uploads = as_uploads(*((f"{seed}.png", noise_png(seed)) for seed in seeds))
    return case_services.case_create(user=user, patient=patient, uploads=uploads, submit=True)


def run(case) -> dict:
    return analyse_case.apply(args=(case.pk,)).get()


def versions_of(case) -> set[str]:
    return {str(p.model_version) for p in Prediction.objects.filter(image__case=case)}


def shown(case) -> str:
    result = selectors.case_result(case=case)
    assert result is not None
    return str(result.model_version)


def test_a_case_is_analysed_by_the_version_deployed_when_it_was_submitted(
    queued, alice, alice_patient, v1, v2
):
    case = submit(alice, alice_patient, 1, 2)
    model_version_deploy(model_version=v2, actor=None, reason="deployed while it waited")
    assert run(case)["model_version"] == "tiny v1"
    assert versions_of(case) == {"tiny v1"} and shown(case) == "tiny v1"


def test_a_stray_message_after_a_deploy_leaves_a_finished_case_and_its_answer_alone(
    queued, alice, alice_patient, v1, v2
):
    case = submit(alice, alice_patient, 1)
    run(case)
    model_version_deploy(model_version=v2, actor=None, reason="newer")
    assert run(case)["note"] == "nothing to analyse"
    model_version_rollback(actor=None, reason="v2 was worse")
    assert versions_of(case) == {"tiny v1"} and shown(case) == "tiny v1"
    assert CaseResult.objects.filter(case=case).count() == 1


def test_new_images_of_an_analysed_case_go_to_its_own_version(queued, alice, alice_patient, v1, v2):
    case = submit(alice, alice_patient, 1)
    run(case)
    model_version_deploy(model_version=v2, actor=None, reason="newer")
    case_services.case_images_add(
        user=alice, case=case, uploads=as_uploads(("3.png", noise_png(3)))
    )
    run(case)
    assert versions_of(case) == {"tiny v1"}
    assert CaseResult.objects.get(case=case, primary=True).images_count == 2


def test_a_case_submitted_with_no_model_deployed_takes_the_one_a_worker_finds(
    queued, alice, alice_patient, artifacts
):
    case = submit(alice, alice_patient, 1)
    assert not CaseAnalysis.objects.exists()
    assert run(case)["note"] == "no model deployed"
    version = model_version_import(source=artifacts["v1"])
    model_version_deploy(model_version=version, actor=None, reason="first")
    run(case)
    assert CaseAnalysis.objects.get(case=case).model_version == version
    assert versions_of(case) == {"tiny v1"}


def test_an_administrator_asks_for_a_reanalysis_and_its_answer_is_shown_when_complete(
    queued, alice, alice_patient, admin_user, v1, v2, django_capture_on_commit_callbacks
):
    case = submit(alice, alice_patient, 1, 2)
    run(case)
    with django_capture_on_commit_callbacks(execute=True):
        case_reanalysis_request(case=case, model_version=v2, actor=admin_user, reason="v1 recalled")
    assert queued[-1] == case.pk
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert set(case.images.values_list("status", flat=True)) == {SmearImage.Status.PENDING}
    assert shown(case) == "tiny v1"  # until v2 has every image

    run(case)
    assert versions_of(case) == {"tiny v1", "tiny v2"}  # added, nothing replaced
    assert shown(case) == "tiny v2"
    assert CaseResult.objects.filter(case=case, primary=False).get().model_version == v1
    event = AuditEvent.objects.filter(case=case, action=AuditEvent.Action.SUBMIT).first()
    assert event is not None and event.actor == admin_user
    assert event.detail["reanalysis"] == "tiny v2" and event.detail["reason"] == "v1 recalled"
    assert event.detail["previous"] == "tiny v1"


def test_a_reanalysis_under_way_keeps_the_earlier_answer_on_show(
    queued, alice, alice_patient, admin_user, v1, v2, monkeypatch
):
    case = submit(alice, alice_patient, 1, 2)
    run(case)
    case_reanalysis_request(case=case, model_version=v2, actor=admin_user, reason="compare")
    seen = []
    store = analysis._predictions_store

    def store_and_look(*args) -> None:
        store(*args)
        seen.append(shown(case))

    monkeypatch.setattr(analysis, "ANALYSIS_CHUNK", 1)
    monkeypatch.setattr(analysis, "_predictions_store", store_and_look)
    run(case)
    assert seen == ["tiny v1", "tiny v2"]


def test_going_back_to_a_version_that_has_every_image_switches_at_once(
    queued, alice, alice_patient, admin_user, v1, v2
):
    case = submit(alice, alice_patient, 1)
    run(case)
    case_reanalysis_request(case=case, model_version=v2, actor=admin_user, reason="try v2")
    run(case)
    case_reanalysis_request(case=case, model_version=v1, actor=admin_user, reason="back")
    assert shown(case) == "tiny v1"
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSED


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no reason", "Say why"),
        ("same version", "already analysed with tiny v1"),
        ("signed off", "signed off"),
        ("draft", "Only a submitted case"),
        ("retired", "retired"),
    ],
)
def test_a_reanalysis_is_refused_when_it_could_not_mean_anything(
    queued, alice, alice_patient, admin_user, v1, v2, setup, message
):
    case = submit(alice, alice_patient, 1)
    run(case)
    version, reason = v2, "a reason"
    if setup == "no reason":
        reason = "  "
    elif setup == "same version":
        version = v1
    elif setup == "signed off":
        Case.objects.filter(pk=case.pk).update(status=Case.Status.REVIEWED)
    elif setup == "draft":
        case = case_services.case_create(user=alice, patient=alice_patient)
    elif setup == "retired":
        model_version_retire(model_version=v2, actor=None, reason="withdrawn")
        version = ModelVersion.objects.get(pk=v2.pk)
    with pytest.raises(ValidationError, match=message):
        case_reanalysis_request(case=case, model_version=version, actor=admin_user, reason=reason)
    assert CaseAnalysis.objects.filter(requested_by=admin_user).count() == 0


def test_only_an_administrator_asks_for_a_reanalysis_from_the_case_page(
    queued, client_for, alice, alice_patient, admin_user, v1, v2
):
    case = submit(alice, alice_patient, 1)
    run(case)
    page = client_for(alice).get(f"/cases/{case.pk}/").content.decode()
    assert "Analyse again" not in page
    refused = client_for(alice).post(
        f"/cases/{case.pk}/reanalyse/", {"model_version": v2.pk, "reason": "x"}
    )
    assert refused.status_code == HTTPStatus.FORBIDDEN

    admin = client_for(admin_user)
    page = admin.get(f"/cases/{case.pk}/").content.decode()
    assert "Analyse again" in page and f'value="{v2.pk}"' in page and f'value="{v1.pk}"' not in page
    response = admin.post(
        f"/cases/{case.pk}/reanalyse/", {"model_version": v2.pk, "reason": "compare"}, follow=True
    )
    html = response.content.decode()
    assert "queued for analysis with tiny v2" in html
    status = admin.get(f"/cases/{case.pk}/status/").json()["html"]
    assert "Being analysed again with tiny v2" in status
    assert selectors.case_analysis_version(case_id=case.pk) == v2


def test_an_administrator_tells_the_earlier_answer_from_a_shadow_on_the_review_page(
    queued, client_for, alice, alice_patient, admin_user, v1, v2
):
    case = submit(alice, alice_patient, 1)
    run(case)
    case_reanalysis_request(case=case, model_version=v2, actor=admin_user, reason="v1 recalled")
    run(case)
    page = client_for(admin_user).get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "Model answer:" in page and "Earlier answer:" in page
    assert "Shadow model answer" not in page
