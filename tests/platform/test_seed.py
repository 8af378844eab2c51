"""seed_demo_cases: records as the product leaves them, in bulk, for the pages at scale."""

from http import HTTPStatus

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, F
from django.urls import reverse

from cases.models import Case, Patient, SmearImage
from inference.models import CaseAnalysis, CaseResult, Prediction
from reviews.models import Review, SignOff
from tests.factories import ModelVersionFactory


@pytest.fixture
def version(db):
    return ModelVersionFactory.create(manifest={"confidence_threshold": 0.6})


def test_seed_demo_cases_adds_patients_cases_and_viewable_images(client_for, alice, version):
    call_command("seed_demo_cases", "40", "--team", "Team A", "--user", "alice", stdout=None)
    assert Patient.objects.count() == Case.objects.count() == 40
    assert SmearImage.objects.count() == 80
    assert Case.objects.filter(status=Case.Status.DRAFT).count() == 0
    assert Case.objects.dates("created", "month").count() > 1  # spread over the year
    # A handful of stored JPEGs shared by every row.
    assert SmearImage.objects.values("file").distinct().count() <= 8
    assert set(SmearImage.objects.values_list("format", flat=True)) == {"JPEG"}

    client = client_for(alice)
    listing = client.get(reverse("clinic:case_list") + "?mine=on&page=2")
    assert listing.context["page"].paginator.count == 40
    image = SmearImage.objects.first()
    assert image is not None
    for view in ("clinic:image_thumbnail", "clinic:image_file"):
        assert client.get(reverse(view, args=[image.pk])).status_code == HTTPStatus.OK


def test_analysed_cases_have_what_a_worker_and_a_reviewer_leave(version):
    call_command(
        "seed_demo_cases", "300", "--team", "Team A", "--team", "Team B", "--seed", "3",
        stdout=None,
    )  # fmt: skip
    analysed = Case.objects.filter(status__in=[Case.Status.ANALYSED, Case.Status.REVIEWED])
    assert 240 <= analysed.count() <= 300  # --analysed 0.9
    # Every analysed image has one prediction; every analysed case one primary answer.
    assert Prediction.objects.count() == SmearImage.objects.filter(case__in=analysed).count()
    assert CaseResult.objects.filter(primary=True).count() == analysed.count()
    assert CaseAnalysis.objects.count() == analysed.count()
    assert not SmearImage.objects.filter(case__in=analysed).exclude(status="done").exists()
    # Unanalysed cases have no answer at all.
    assert not CaseResult.objects.exclude(case__in=analysed).exists()
    # Sign-offs: the reviewed cases, exactly, each of a verdict on its own case.
    signed = SignOff.objects.values_list("case", flat=True)
    reviewed = Case.objects.filter(status=Case.Status.REVIEWED).values_list("pk", flat=True)
    assert set(signed) == set(reviewed)
    assert not SignOff.objects.exclude(review__case=F("case")).exists()
    assert 0 < Review.objects.count() < analysed.count()
    # Each team's cases are reviewed by that team's own reviewer.
    for review in Review.objects.select_related("case", "reviewer")[:50]:
        assert review.reviewer.teams.filter(pk=review.case.team_id).exists()
    # Cases are spread over both teams, and nothing was made before its case.
    assert Case.objects.values("team").annotate(n=Count("pk")).count() == 2
    for result in CaseResult.objects.select_related("case")[:50]:
        assert result.created > result.case.created


def test_the_same_seed_makes_the_same_records(version):
    def snapshot():
        return list(
            Case.objects.order_by("pk").values_list(
                "status", "specimen", "results__label", "reviews__diagnosis"
            )
        )

    call_command("seed_demo_cases", "30", "--seed", "7", stdout=None)
    first = snapshot()
    call_command("seed_demo_cases", "30", "--seed", "7", stdout=None)
    assert snapshot()[len(first) :] == first


def test_seeding_twice_adds_new_patients_rather_than_clashing(db):
    call_command("seed_demo_cases", "3", "--images-per-case", "0", stdout=None)
    call_command("seed_demo_cases", "3", "--images-per-case", "0", "--seed", "1", stdout=None)
    assert Patient.objects.count() == 6
    # Without images nothing was submitted, so nothing needed a model.
    assert set(Case.objects.values_list("status", flat=True)) == {Case.Status.DRAFT}


def test_answers_without_a_model_version_are_refused_with_what_to_do(db):
    with pytest.raises(CommandError, match="ensure_demo_model"):
        call_command("seed_demo_cases", "3", stdout=None)
    assert not Case.objects.exists()
