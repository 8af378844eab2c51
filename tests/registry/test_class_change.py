"""A model with another class set never serves silently, and reviewers keep diagnosing in
the same clinical vocabulary whichever model answers."""

from http import HTTPStatus

import pytest

from inference.models import ModelVersion
from inference.services.registry import (
    RegistryError,
    model_version_deploy,
    model_version_set_shadow,
)
from reviews.services import diagnosis_choices, review_create
from tests.factories import ModelVersionFactory, analysed_case

TALEQANI = ["Benign", "Early", "Pre", "Pro"]
MAPPED = {
    "clinical_labels": {"Benign": "healthy", "Early": "ALL", "Pre": "ALL"},
    "class_meanings": {"Benign": "hematogones, no leukemia", "Pre": "B-ALL, pre-B"},
}


@pytest.fixture
def deployed(db):
    return ModelVersionFactory.create(name="subtypes")


@pytest.fixture
def taleqani(db):
    return ModelVersionFactory.create(
        name="taleqani",
        classes=TALEQANI,
        status=ModelVersion.Status.REGISTERED,
        manifest={"classes": TALEQANI, "extra": MAPPED},
    )


def test_deploying_or_shadowing_another_class_set_needs_its_own_confirmation(
    deployed, taleqani, admin_user
):
    for change in (model_version_deploy, model_version_set_shadow):
        with pytest.raises(RegistryError, match="other classes"):
            change(model_version=taleqani, actor=admin_user, reason="try")
    assert ModelVersion.objects.deployed() == deployed
    model_version_deploy(
        model_version=taleqani, actor=admin_user, reason="new lab", accept_new_classes=True
    )
    assert ModelVersion.objects.deployed() == taleqani


def test_the_confirmation_page_shows_both_class_sets_and_asks_for_the_change(
    client_for, admin_user, deployed, taleqani
):
    client = client_for(admin_user)
    url = f"/registry/{taleqani.pk}/deploy/"
    page = client.get(url).content.decode()
    assert "The classes change." in page
    assert "ALL, AML, CLL, CML" in page and "Benign, Early, Pre, Pro" in page
    assert "hematogones, no leukemia" in page
    assert client.post(url, {"reason": "new lab"}).status_code == HTTPStatus.BAD_REQUEST
    assert ModelVersion.objects.deployed() == deployed
    response = client.post(url, {"reason": "new lab", "accept_new_classes": "on"})
    assert response.status_code == HTTPStatus.FOUND
    assert ModelVersion.objects.deployed() == taleqani


def test_the_same_class_set_needs_no_extra_confirmation(client_for, admin_user, deployed):
    same = ModelVersionFactory.create(name="subtypes", version="2", status="registered")
    response = client_for(admin_user).post(f"/registry/{same.pk}/deploy/", {"reason": "better"})
    assert response.status_code == HTTPStatus.FOUND
    assert ModelVersion.objects.deployed() == same


def test_diagnoses_stay_the_clinical_vocabulary_and_mapped_labels_count_as_agreement(
    client_for, bob, taleqani
):
    assert diagnosis_choices() == ["healthy", "ALL", "AML", "CLL", "CML", "inconclusive"]
    case = analysed_case("Team A", "P1", taleqani, label="Pre")
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "Agree: ALL (the model's Pre)" in page
    assert 'value="Benign"' not in page  # the model's own labels are not diagnoses
    assert "B-ALL, pre-B" in page
    review = review_create(case=case, reviewer=bob, diagnosis="ALL")
    assert (review.verdict, review.model_label) == ("agree", "Pre")


def test_a_label_that_maps_to_no_diagnosis_can_only_be_overridden(client_for, bob, taleqani):
    case = analysed_case("Team A", "P1", taleqani, label="Pro")
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/").content.decode()
    assert "Agree:" not in page and "stands for none of the diagnoses" in page
    review = review_create(case=case, reviewer=bob, diagnosis="ALL", comment="pro-B is B-ALL")
    assert review.verdict == "override"
