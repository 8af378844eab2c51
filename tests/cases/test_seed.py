from http import HTTPStatus

from django.core.management import call_command
from django.urls import reverse

from cases.models import Case, Patient, SmearImage


def test_seed_demo_cases_adds_patients_cases_and_viewable_images(client_for, alice):
    call_command("seed_demo_cases", "40", "--team", "Team A", "--user", "alice", stdout=None)
    assert Patient.objects.count() == Case.objects.count() == 40
    assert SmearImage.objects.count() == 80
    assert Case.objects.filter(status=Case.Status.DRAFT).count() == 0
    assert Case.objects.dates("created", "month").count() > 1  # spread over the year

    client = client_for(alice)
    listing = client.get(reverse("clinic:case_list") + "?mine=on&page=2")
    assert listing.context["page"].paginator.count == 40
    image = SmearImage.objects.first()
    assert image is not None
    assert (
        client.get(reverse("clinic:image_thumbnail", args=[image.pk])).status_code == HTTPStatus.OK
    )


def test_seeding_twice_adds_new_patients_rather_than_clashing(db):
    call_command("seed_demo_cases", "3", "--images-per-case", "0", stdout=None)
    call_command("seed_demo_cases", "3", "--images-per-case", "0", "--seed", "1", stdout=None)
    assert Patient.objects.count() == 6
