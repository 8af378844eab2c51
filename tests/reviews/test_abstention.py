"""A case whose every image the guard flagged: the model gave no subtype, so nothing a
reviewer records agrees with it, no page offers to agree with it, and agreement counts
leave it out."""

from http import HTTPStatus
from importlib import import_module

import pytest
from django.core.exceptions import ValidationError

from reviews.models import Review
from reviews.selectors import agreement_for_model_version
from reviews.services import case_sign_off, review_create
from tests.factories import ModelVersionFactory, analysed_case


def test_a_diagnosis_on_an_out_of_scope_case_is_never_agreement_and_needs_no_argument(bob, db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version, label="AML", images=2, out_of_scope=True)
    # The model's top label was AML, but it gave no answer: AML is the reviewer's own call.
    review = review_create(case=case, reviewer=bob, diagnosis="AML")
    assert (review.verdict, review.model_label) == (Review.Verdict.OVERRIDE, "AML")


def test_an_answered_case_still_asks_why_the_model_is_overridden(bob, db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version, label="AML")
    assert review_create(case=case, reviewer=bob, diagnosis="AML").verdict == "agree"
    with pytest.raises(ValidationError, match="why"):
        review_create(case=case, reviewer=bob, diagnosis="CML")


def test_the_review_page_offers_no_agree_button_when_the_model_gave_no_answer(client_for, bob, db):
    version = ModelVersionFactory.create()
    abstained = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    answered = analysed_case("Team A", "P2", version, label="AML")
    client = client_for(bob)
    page = client.get(f"/reviews/cases/{abstained.pk}/").content.decode()
    assert "Agree: AML" not in page
    assert "data-abstained" in page and "not an answer" in page
    assert "Record diagnosis" in page and "Record override" not in page  # nothing to override
    other = client.get(f"/reviews/cases/{answered.pk}/").content.decode()
    assert "Agree: AML" in other and "Record override" in other


def test_the_clinicians_case_page_says_the_bars_are_not_an_answer(client_for, bob, db):
    version = ModelVersionFactory.create()
    case = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    response = client_for(bob).get(f"/cases/{case.pk}/")
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "data-abstained" in page and "the bars below are not an answer" in page
    assert "Case prediction: AML" not in page


def test_agreement_leaves_out_cases_where_the_model_gave_no_answer(bob, db):
    version = ModelVersionFactory.create()
    for identifier, out_of_scope in (("P1", False), ("P2", True)):
        case = analysed_case("Team A", identifier, version, label="AML", out_of_scope=out_of_scope)
        review_create(case=case, reviewer=bob, diagnosis="AML")
        case_sign_off(case=case, reviewer=bob)
    stats = agreement_for_model_version(user=bob, model_version=version)
    assert (stats.reviewed, stats.agreed) == (1, 1)


# --- an abstained answer is never shown, printed or served as a subtype ----------------


def _signed_off_abstained_case(bob, version):
    case = analysed_case("Team A", "P1", version, label="AML", images=2, out_of_scope=True)
    review_create(case=case, reviewer=bob, diagnosis="CML")
    case_sign_off(case=case, reviewer=bob)
    return case


def test_the_verdict_keeps_that_the_model_gave_no_answer(bob, db):
    version = ModelVersionFactory.create()
    abstained = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    answered = analysed_case("Team A", "P2", version, label="AML")
    review = review_create(case=abstained, reviewer=bob, diagnosis="AML")
    assert review.model_abstained and str(review) == f"Diagnosis: AML (case {abstained.pk})"
    assert not review_create(case=answered, reviewer=bob, diagnosis="AML").model_abstained


def test_the_printed_report_gives_no_subtype_for_an_out_of_scope_case(client_for, bob, db):
    version = ModelVersionFactory.create()
    case = _signed_off_abstained_case(bob, version)
    page = client_for(bob).get(f"/reviews/cases/{case.pk}/report/").content.decode()
    assert "data-abstained" in page and "gave no subtype" in page
    assert "<strong>AML</strong>" not in page  # the top class is not printed as the answer
    assert "of the model's AML" not in page
    assert 'class="probbars muted"' in page and 'class="top"' not in page
    answered = analysed_case("Team A", "P2", version, label="AML")
    review_create(case=answered, reviewer=bob, diagnosis="AML")
    case_sign_off(case=answered, reviewer=bob)
    other = client_for(bob).get(f"/reviews/cases/{answered.pk}/report/").content.decode()
    assert "<strong>AML</strong>" in other and "agree of the model's AML" in other
    assert 'class="probbars"' in other and 'class="top"' in other


def test_the_case_and_review_pages_do_not_call_the_diagnosis_an_override_of_a_subtype(
    client_for, alice, bob, db
):
    version = ModelVersionFactory.create()
    case = _signed_off_abstained_case(bob, version)
    clinician = client_for(alice).get(f"/cases/{case.pk}/").content.decode()
    assert "gave no subtype" in clinician and "overrode the model" not in clinician
    assert 'class="bars muted"' in clinician and 'class="top"' not in clinician
    review = client_for(bob).get(f"/reviews/cases/{case.pk}/?blinded=0").content.decode()
    assert "no subtype: out of scope" in review and "AML (" not in review
    assert "<strong>CML</strong> (the model gave no subtype)" in review
    verdicts = review.split("<h2>Verdicts</h2>")[1].split("</table>")[0]
    assert "<td>Diagnosis</td>" in verdicts and "Override" not in verdicts


def test_the_review_queue_shows_no_subtype_for_an_out_of_scope_case(client_for, bob, db):
    version = ModelVersionFactory.create()
    abstained = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    answered = analysed_case("Team A", "P2", version, label="AML")
    client = client_for(bob)
    page = client.get("/reviews/").content.decode()
    row = page.split(f"#{abstained.pk}<")[1].split("</tr>")[0]
    assert "out of scope" in row and "AML" not in row
    filtered = client.get("/reviews/", {"subtype": "AML"}).content.decode()
    assert f"#{answered.pk}<" in filtered and f"#{abstained.pk}<" not in filtered
    # The clinicians' list filters the same way.
    listed = client.get("/cases/", {"predicted": "AML"}).content.decode()
    assert f"/cases/{answered.pk}/" in listed and f"/cases/{abstained.pk}/" not in listed


def test_the_api_serves_no_subtype_for_an_out_of_scope_case(api_for, bob, db):
    version = ModelVersionFactory.create()
    case = _signed_off_abstained_case(bob, version)
    answered = analysed_case("Team A", "P2", version, label="AML")
    api = api_for(bob)
    body = api.get(f"/api/cases/{case.pk}/").json()
    assert body["predicted_label"] is None
    assert body["result"]["abstained"] is True
    assert body["sign_off"]["model_abstained"] is True
    other = api.get(f"/api/cases/{answered.pk}/").json()
    assert other["predicted_label"] == "AML" and other["result"]["abstained"] is False


def test_verdicts_filed_before_the_field_existed_learn_whether_the_model_abstained(bob, db):
    from django.apps import apps

    copy = import_module("reviews.migrations.0004_review_model_abstained").abstentions_copy
    version = ModelVersionFactory.create()
    abstained = analysed_case("Team A", "P1", version, label="AML", out_of_scope=True)
    answered = analysed_case("Team A", "P2", version, label="AML")
    reviews = [review_create(case=c, reviewer=bob, diagnosis="AML") for c in (abstained, answered)]
    Review.objects.update(model_abstained=False)  # as every row was before the migration
    copy(apps, None)
    assert [Review.objects.get(pk=r.pk).model_abstained for r in reviews] == [True, False]


def test_the_agreement_page_does_not_call_an_uncounted_sign_off_no_sign_off(client_for, bob, db):
    version = ModelVersionFactory.create()
    _signed_off_abstained_case(bob, version)
    page = client_for(bob).get("/reviews/agreement/").content.decode()
    assert "No signed-off case with a model answer yet." in page
