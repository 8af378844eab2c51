from http import HTTPStatus
from xml.etree import ElementTree

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from inference.models import DeploymentEvent, ModelVersion
from inference.services.registry import model_version_import
from registry.report import report_sections
from tests.factories import SUBTYPES as CLASSES
from tests.factories import ModelVersionFactory
from tests.helpers import training_report


@pytest.fixture
def versions(db):
    live = ModelVersionFactory.create(name="cnn", version="1", report=training_report())
    DeploymentEvent.objects.create(model_version=live, action="deploy", reason="first")
    candidate = ModelVersionFactory.create(
        name="cnn",
        version="2",
        status=ModelVersion.Status.REGISTERED,
        synthetic=True,
        report=training_report(synthetic=True),
    )
    return live, candidate


def test_admin_sees_every_version_with_status_and_deploy_history(client_for, admin_user, versions):
    page = client_for(admin_user).get("/registry/").content.decode()
    assert "cnn 1" in page and "cnn 2" in page
    assert "Deployed" in page and "Registered" in page
    assert "first" in page


def test_the_report_page_renders_every_section_next_to_live_agreement(
    client_for, admin_user, versions
):
    live, candidate = versions
    response = client_for(admin_user).get(f"/registry/{candidate.pk}/")
    page = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    for expected in (
        "Per class (test split)",
        "Confusion matrix (test split)",
        'aria-label="Accuracy"',
        'aria-label="Loss"',
        'aria-label="Reliability (test split)"',
        "Comparison across architectures",
        "Cheap baselines",
        "SYNTHETIC",
        "Live agreement with reviewers",
        "Synthetic demo model — not for clinical use",
    ):
        assert expected in page, expected
    headline = dict((title, value) for title, value, _ in response.context["report"]["headline"])
    assert headline["Test images"] == 40 and isinstance(headline["Test images"], int)
    for _, values in response.context["report"]["per_class"]:
        assert isinstance(values[-1], int)  # the support: a count of images
    # The candidate's own panel, then the deployed one for comparison.
    assert [p["version"] for p in response.context["live"]] == [candidate, live]
    assert {row["label"] for row in response.context["comparison"]} == {"cnn 1", "cnn 2"}


def test_the_report_figures_are_well_formed_svg():
    sections = report_sections(training_report())
    figures = [*sections["curves"], sections["reliability"]]
    assert len(figures) == 3
    for svg in figures:
        root = ElementTree.fromstring(svg)  # noqa: S314 (our own output, not untrusted)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.findall(".//{http://www.w3.org/2000/svg}polyline")


@pytest.mark.parametrize(
    "report",
    [
        {},
        {"classes": CLASSES},
        {"classes": CLASSES, "evaluation": {"test": {"accuracy": 0.5, "confusion_matrix": [[1]]}}},
        {"evaluation": "garbage", "training": {"history": {"loss": ["x"]}}, "baselines": [1]},
    ],
)
def test_a_report_with_missing_or_odd_sections_still_renders(client_for, admin_user, report):
    version = ModelVersionFactory.create(report=report)
    assert client_for(admin_user).get(f"/registry/{version.pk}/").status_code == HTTPStatus.OK
    sections = report_sections(report)
    assert sections["confusion"] == [] and sections["curves"] == []


def test_admin_deploys_after_confirming_with_a_reason(client_for, admin_user, versions):
    live, candidate = versions
    client = client_for(admin_user)
    url = f"/registry/{candidate.pk}/deploy/"
    confirm = client.get(url)
    assert confirm.status_code == HTTPStatus.OK and b"Reason (required)" in confirm.content

    assert client.post(url, {"reason": ""}).status_code == HTTPStatus.BAD_REQUEST
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.REGISTERED

    assert client.post(url, {"reason": "better macro F1"}).status_code == HTTPStatus.FOUND
    candidate.refresh_from_db()
    live.refresh_from_db()
    assert candidate.status == ModelVersion.Status.DEPLOYED
    assert live.status == ModelVersion.Status.REGISTERED
    event = AuditEvent.objects.get(action=AuditEvent.Action.DEPLOY, target_id=str(candidate.pk))
    assert event.detail == {"event": "deploy", "reason": "better macro F1"}
    assert event.actor == admin_user


def test_admin_rolls_back_and_sets_a_shadow_each_recorded(client_for, admin_user, versions):
    live, candidate = versions
    client = client_for(admin_user)
    client.post(f"/registry/{candidate.pk}/deploy/", {"reason": "try it"})
    assert b"Roll back to cnn 1" in client.get("/registry/").content
    assert client.post("/registry/rollback/", {"reason": "worse"}).status_code == 302
    live.refresh_from_db()
    assert live.status == ModelVersion.Status.DEPLOYED

    assert client.post(f"/registry/{candidate.pk}/shadow/", {"reason": "watch"}).status_code == 302
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.SHADOW
    recorded = list(
        AuditEvent.objects.filter(action=AuditEvent.Action.DEPLOY)
        .order_by("pk")
        .values_list("detail__event", "detail__reason")
    )
    assert recorded == [("deploy", "try it"), ("rollback", "worse"), ("shadow", "watch")]


def test_a_refused_registry_change_is_explained_on_the_confirmation_page(
    client_for, admin_user, versions
):
    live, _ = versions
    response = client_for(admin_user).post(f"/registry/{live.pk}/deploy/", {"reason": "again"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert b"already deployed" in response.content


def test_the_version_page_shows_both_variants_figures_and_lets_an_admin_choose_int8(
    client_for, admin_user, int8_artifact
):
    version = model_version_import(source=int8_artifact)
    client = client_for(admin_user)
    page = client.get(reverse("registry:detail", args=[version.pk])).content.decode()
    int8 = version.manifest["int8"]
    assert "verified on 8 images" in page and "BCCD" in page
    assert f"{int8['accuracy'] * 100:.1f}%" in page and "accepted: within the accuracy" in page
    assert "data-variant-form" in page and '<option value="int8">' in page

    response = client.post(
        reverse("registry:variant", args=[version.pk]), {"variant": "int8", "reason": "faster"}
    )
    assert response.status_code == HTTPStatus.FOUND
    version.refresh_from_db()
    assert version.variant == "int8"
    page = client.get(reverse("registry:detail", args=[version.pk])).content.decode()
    assert "Choose variant" in page and "faster" in page  # in the deployment history


def test_a_variant_change_without_a_reason_changes_nothing(client_for, admin_user, int8_artifact):
    version = model_version_import(source=int8_artifact)
    response = client_for(admin_user).post(
        reverse("registry:variant", args=[version.pk]),
        {"variant": "int8", "reason": ""},
        follow=True,
    )
    assert "give a reason" in response.content.decode()
    version.refresh_from_db()
    assert version.variant == "fp32"


def test_a_clinician_cannot_choose_a_variant(client_for, alice, int8_artifact):
    version = model_version_import(source=int8_artifact)
    response = client_for(alice).post(
        reverse("registry:variant", args=[version.pk]), {"variant": "int8", "reason": "x"}
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    version.refresh_from_db()
    assert version.variant == "fp32"
