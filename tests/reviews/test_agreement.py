from http import HTTPStatus

import pytest

from inference.models import ModelVersion
from reviews.selectors import agreement_for_model_version
from reviews.services import case_sign_off, review_create
from reviews.stats import agreement_compute
from tests.factories import ModelVersionFactory, analysed_case


def test_agreement_on_a_known_set_of_reviews():
    pairs = [
        ("AML", "AML"),
        ("AML", "AML"),
        ("AML", "CML"),
        ("ALL", "ALL"),
        ("CLL", "inconclusive"),
        ("CML", "CML"),
    ]
    stats = agreement_compute([(*pair, 1) for pair in pairs], ["ALL", "AML", "CLL", "CML"])
    assert stats.labels == ("ALL", "AML", "CLL", "CML", "inconclusive")
    assert stats.matrix == (
        (1, 0, 0, 0, 0),
        (0, 2, 0, 1, 0),
        (0, 0, 0, 0, 1),
        (0, 0, 0, 1, 0),
        (0, 0, 0, 0, 0),
    )
    assert (stats.reviewed, stats.agreed, stats.inconclusive) == (6, 4, 1)
    assert stats.rate == pytest.approx(4 / 6)
    assert stats.conclusive_rate == pytest.approx(4 / 5)


def test_no_reviews_means_no_rate_rather_than_zero():
    stats = agreement_compute([], ["A", "B"])
    assert stats.reviewed == 0 and stats.rate is None
    assert stats.matrix == ((0, 0, 0),) * 3


def test_a_diagnosis_outside_the_models_classes_gets_its_own_column():
    stats = agreement_compute([("A", "Z", 1)], ["A", "B"])
    assert stats.labels == ("A", "B", "inconclusive", "Z")
    assert stats.matrix[0] == (0, 0, 0, 1)


def test_counts_of_one_pair_add_up_whether_grouped_or_not():
    grouped = agreement_compute([("A", "A", 3), ("A", "B", 1)], ["A", "B"])
    apart = agreement_compute([("A", "A", 1), ("A", "A", 2), ("A", "B", 1)], ["A", "B"])
    assert grouped == apart
    assert (grouped.reviewed, grouped.agreed, grouped.matrix[0][0]) == (4, 3, 3)


def _sign(case, reviewer, diagnosis):
    review_create(case=case, reviewer=reviewer, diagnosis=diagnosis, comment="checked")
    case_sign_off(case=case, reviewer=reviewer)


def test_deployed_and_shadow_are_measured_against_the_same_sign_offs(client_for, bob, db):
    deployed = ModelVersionFactory.create()
    shadow = ModelVersionFactory.create(name="cnn", version="2", status=ModelVersion.Status.SHADOW)
    _sign(analysed_case("Team A", "P1", deployed, label="AML", shadow=(shadow, "AML")), bob, "AML")
    _sign(analysed_case("Team A", "P2", deployed, label="AML", shadow=(shadow, "CML")), bob, "CML")
    _sign(analysed_case("Team A", "P3", deployed, label="CLL", shadow=(shadow, "CLL")), bob, "CLL")
    analysed_case("Team A", "P4", deployed, label="ALL")  # not signed off: not counted
    analysed_case("Team B", "P5", deployed, label="ALL")

    main = agreement_for_model_version(user=bob, model_version=deployed)
    side = agreement_for_model_version(user=bob, model_version=shadow)
    assert (main.reviewed, main.agreed) == (3, 2)
    assert (side.reviewed, side.agreed) == (3, 3)
    at = main.labels.index  # rows and columns follow the reviewers' vocabulary
    assert main.matrix[at("AML")][at("CML")] == 1  # model AML, reviewer CML

    response = client_for(bob).get("/reviews/agreement/")
    assert response.status_code == HTTPStatus.OK
    assert [p["version"] for p in response.context["panels"]] == [deployed, shadow]
    assert "66.7%" in response.content.decode() and "100.0%" in response.content.decode()


def test_a_new_sign_off_is_counted_at_once_and_until_then_the_counts_are_reused(
    bob, dave, db, django_assert_max_num_queries
):
    deployed = ModelVersionFactory.create()
    _sign(analysed_case("Team A", "P1", deployed, label="AML"), bob, "AML")
    assert agreement_for_model_version(user=bob, model_version=deployed).reviewed == 1
    # Counted already: the teams and the newest sign-off, nothing else.
    with django_assert_max_num_queries(2):
        assert agreement_for_model_version(user=bob, model_version=deployed).reviewed == 1
    # Another team's reviewer gets counts of their own teams, not the ones kept for bob.
    assert agreement_for_model_version(user=dave, model_version=deployed).reviewed == 0

    _sign(analysed_case("Team A", "P2", deployed, label="AML"), bob, "CML")
    stats = agreement_for_model_version(user=bob, model_version=deployed)
    assert (stats.reviewed, stats.agreed) == (2, 1)
