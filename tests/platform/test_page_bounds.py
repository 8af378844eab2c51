"""Pages given numbers no id can have, in the path or the query, answer 4xx or ignore
them, never 500: what schemathesis found in the API, tried on the pages."""

from http import HTTPStatus

import pytest

HUGE = "99999999999999999999999"
NEGATIVE = "-797288806873589476229120"
ODD = ["²", HUGE, NEGATIVE, "1e400", "NaN", "0x10", "1.5", ""]


@pytest.mark.parametrize("value", ODD)
@pytest.mark.parametrize(
    "path",
    [
        "/cases/?page={}",
        "/cases/?created_from={}&created_to={}",
        "/cases/new/?patient={}",
        "/patients/?page={}",
        "/reviews/?page={}",
        "/reviews/predictions/?page={}&q={}",
        "/reviews/agreement/?version={}",
        f"/cases/{HUGE}/",
        f"/patients/{HUGE}/",
        f"/images/{HUGE}/thumbnail/",
        f"/reviews/cases/{HUGE}/",
        f"/registry/{HUGE}/",
    ],
)
def test_a_number_no_id_can_have_in_a_page_address_is_never_a_server_error(
    client_for, admin_user, path, value
):
    response = client_for(admin_user).get(path.format(value, value))
    assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, (path, value)


@pytest.mark.parametrize("value", ODD)
def test_a_reanalysis_with_a_version_no_id_can_have_is_refused_politely(
    client_for, admin_user, alice_case, value
):
    response = client_for(admin_user).post(
        f"/cases/{alice_case.pk}/reanalyse/", {"model_version": value}
    )
    assert response.status_code == HTTPStatus.FOUND
