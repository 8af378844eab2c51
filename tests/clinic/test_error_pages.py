"""Every error page has the site's layout, a sentence saying why and where to go."""

from http import HTTPStatus

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from cases.models import Case


def test_a_mistyped_address_gets_the_sites_404_not_a_list_of_url_patterns(client_for, alice):
    response = client_for(alice).get("/casess/")
    page = response.content.decode()
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "Not found" in page and "Go to your cases" in page
    assert 'class="topbar"' in page and "URLconf" not in page


def test_another_teams_case_is_a_styled_404(client_for, charlie, alice_case):
    response = client_for(charlie).get(f"/cases/{alice_case.pk}/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "belongs to another team" in response.content.decode()


def test_a_signed_off_case_offers_no_edit_form_and_says_why(client_for, alice, alice_case):
    Case.objects.filter(pk=alice_case.pk).update(status=Case.Status.REVIEWED)
    client = client_for(alice)
    for response in (
        client.get(f"/cases/{alice_case.pk}/edit/"),
        client.post(f"/cases/{alice_case.pk}/edit/", {"specimen": "bone_marrow"}),
    ):
        page = response.content.decode()
        assert response.status_code == HTTPStatus.FORBIDDEN
        assert (
            "A reviewed case can no longer be changed" in page
            and "<form" not in page.split("</header>")[1].split("</main>")[0]
        )
    assert Case.objects.get(pk=alice_case.pk).specimen == Case.Specimen.PERIPHERAL_BLOOD
    assert "/edit/" not in client.get(f"/cases/{alice_case.pk}/").content.decode()


@pytest.mark.django_db
def test_a_server_error_page_says_it_was_logged_and_what_to_check():
    response = server_error(RequestFactory().get("/cases/"))
    page = response.content.decode()
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert "Something went wrong" in page and "check whether it was saved" in page


def test_a_form_address_opened_as_a_page_gets_the_sites_405_page(client_for, bob):
    """Django answers a POST-only view's GET with an empty 405, which a browser shows as
    its own error page."""
    response = client_for(bob).get("/reviews/settings/")
    page = response.content.decode()
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response["Allow"] == "POST"
    assert "nothing was changed" in page and 'class="topbar"' in page
    assert "no-store" in response["Cache-Control"]


def test_the_api_keeps_its_json_405(api_for, alice):
    response = api_for(alice).get("/api/auth/token/")  # takes POST (and DELETE) only
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json()["error"]["code"] == "method_not_allowed"
