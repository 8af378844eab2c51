"""The version's page polls its evaluations endpoint while a local evaluation is queued,
and the table it gets back has a column for each thing it shows."""

from http import HTTPStatus
from pathlib import Path

import pytest

from inference.models import ModelEvaluation
from inference.services.evaluation import model_version_evaluation_request
from inference.services.registry import model_version_import
from tests.factories import ModelVersionFactory
from tests.helpers import generated_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluation_sets(settings, tmp_path) -> Path:
    settings.EVALUATION_DATA_ROOT = tmp_path / "sets"
    generated_set(settings.EVALUATION_DATA_ROOT / "lab2")
    return settings.EVALUATION_DATA_ROOT


def _queued(version, admin_user) -> ModelEvaluation:
    """Queued as the registry page does (its message is never sent: no commit here)."""
    return model_version_evaluation_request(
        model_version=version, dataset="lab2", actor=admin_user, note="Lab 2 smears"
    )


def test_the_page_polls_while_an_evaluation_is_queued_and_the_endpoint_fills_it_in(
    client_for, admin_user, artifacts, evaluation_sets
):
    from inference.tasks import evaluate_model

    version = model_version_import(source=artifacts["v1"])
    evaluation = _queued(version, admin_user)
    client = client_for(admin_user)
    page = client.get(f"/registry/{version.pk}/").content.decode()
    assert f'data-live-url="/registry/{version.pk}/evaluations/" data-active="true"' in page
    assert "js/live.js" in page

    response = client.get(f"/registry/{version.pk}/evaluations/")
    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["active"] is True
    assert "data-evaluation-pending" in body["html"] and "Lab 2 smears" in body["html"]

    evaluate_model.apply(args=(evaluation.pk,))
    body = client.get(f"/registry/{version.pk}/evaluations/").json()
    assert body["active"] is False
    assert "data-evaluation-pending" not in body["html"]
    assert "data-accuracy" in body["html"]
    assert "Confusion matrix of the latest (12 images)" in body["html"]
    page = client.get(f"/registry/{version.pk}/").content.decode()
    assert 'data-active="false"' in page


def test_the_set_and_its_note_have_columns_of_their_own(client_for, admin_user, evaluation_sets):
    version = ModelVersionFactory.create()
    _queued(version, admin_user)
    html = client_for(admin_user).get(f"/registry/{version.pk}/evaluations/").json()["html"]
    headers = html.split("<thead>")[1].split("</thead>")[0]
    assert headers.index("<th>Set</th>") < headers.index("<th>Note</th>")
    assert headers.index("<th>Note</th>") < headers.index("<th>Status</th>")
    assert headers.index("<th>Status</th>") < headers.index("<th>Images</th>")
    assert headers.index("<th>Images</th>") < headers.index("<th>Accuracy</th>")
    row = html.split("<tbody>")[1]
    cells = row.split("<td")
    assert ">lab2</code>" in cells[1] and "Lab 2 smears" in cells[2]
    assert "queued" in cells[3]


def test_a_version_without_queued_evaluations_is_not_polled(client_for, admin_user):
    version = ModelVersionFactory.create()
    page = client_for(admin_user).get(f"/registry/{version.pk}/").content.decode()
    assert 'data-active="false"' in page
    body = client_for(admin_user).get(f"/registry/{version.pk}/evaluations/").json()
    assert body == {"active": False, "html": body["html"]}
    assert "Not evaluated on local images yet." in body["html"]


@pytest.mark.parametrize("name", ["alice", "bob", "charlie", "dave"])
def test_only_administrators_may_poll_it(request, client_for, admin_user, evaluation_sets, name):
    version = ModelVersionFactory.create()
    _queued(version, admin_user)
    response = client_for(request.getfixturevalue(name)).get(f"/registry/{version.pk}/evaluations/")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "Lab 2" not in response.content.decode()


def test_an_unknown_version_is_404(client_for, admin_user):
    response = client_for(admin_user).get("/registry/999999/evaluations/")
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_it_answers_get_only(client_for, admin_user):
    version = ModelVersionFactory.create()
    response = client_for(admin_user).post(f"/registry/{version.pk}/evaluations/")
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
