"""The list pages and API lists make a fixed number of queries, however many rows they
show: the same for 3 cases as for 30 (a full page), so no row costs a query of its own
(an N+1 would make 30 cases cost more), and never more than the bound asserted here.

Records come from seed_demo_cases, as at 100,000 cases in ``python -m benchmarks.pages``:
cases analysed and waiting for review, signed off, and waiting for a worker.
"""

import pytest
from django.core.management import call_command

from cases.models import Case, SmearImage
from tests.factories import ModelVersionFactory

# Session, user, second factor and the page's own queries; what a row adds must be zero.
MAX_QUERIES = 10
SIZES = (3, 30)


def _seed(per_group: int, start: int) -> None:
    """``per_group`` cases in each of three states, in Team A."""
    groups = (
        ["--reviewed", "0"],  # analysed, in the review queue
        ["--reviewed", "1", "--signed-off", "1"],  # signed off
        ["--analysed", "0"],  # not analysed yet
    )
    for n, shares in enumerate(groups):
        seed = str(start * 10 + n)
        call_command(
            "seed_demo_cases", str(per_group), "--team", "Team A", "--seed", seed, *shares,
            stdout=None,
        )  # fmt: skip
    # Waiting for a worker (rather than failed): the pages then check the queue's health too.
    unfinished = Case.objects.filter(status__in=[Case.Status.ANALYSING, Case.Status.FAILED])
    SmearImage.objects.filter(case__in=unfinished).update(status=SmearImage.Status.PENDING)
    unfinished.update(status=Case.Status.SUBMITTED)


def _query_counts(client, path: str, django_assert_max_num_queries) -> list[int]:
    counts = []
    seeded = 0
    for size in SIZES:
        _seed((size - seeded) // 3, start=seeded)
        seeded = size
        client.get(path)  # the first request of a session also sets it up
        with django_assert_max_num_queries(MAX_QUERIES) as captured:
            response = client.get(path)
        assert response.status_code == 200, path
        counts.append(len(captured))
    assert Case.objects.count() == SIZES[-1]
    return counts


@pytest.fixture
def version(db):
    return ModelVersionFactory.create(manifest={"confidence_threshold": 0.6})


CLINICIAN_PAGES = [
    "/cases/",
    "/cases/?status=analysed",
    "/cases/?q=DEMO",
    "/patients/",
    "/patients/?q=DEMO",
]
REVIEWER_PAGES = [
    *CLINICIAN_PAGES,
    "/reviews/",
    "/reviews/predictions/",
    "/reviews/agreement/",
]
API_LISTS = ["/api/cases/", "/api/cases/?status=analysed", "/api/patients/", "/api/predictions/"]


@pytest.mark.parametrize("path", CLINICIAN_PAGES)
def test_a_clinicians_list_costs_no_query_per_row(
    path, client_for, alice, version, django_assert_max_num_queries
):
    small, full = _query_counts(client_for(alice), path, django_assert_max_num_queries)
    assert small == full


@pytest.mark.parametrize("blinded", [False, True], ids=["sighted", "blinded"])
@pytest.mark.parametrize("path", REVIEWER_PAGES)
def test_a_reviewers_list_costs_no_query_per_row(
    path, blinded, client_for, bob, version, django_assert_max_num_queries
):
    bob.blinded_review = blinded
    bob.save(update_fields=["blinded_review"])
    small, full = _query_counts(client_for(bob), path, django_assert_max_num_queries)
    assert small == full


@pytest.mark.parametrize("path", API_LISTS)
def test_an_api_list_costs_no_query_per_row(
    path, api_for, alice, version, django_assert_max_num_queries
):
    small, full = _query_counts(api_for(alice), path, django_assert_max_num_queries)
    assert small == full
