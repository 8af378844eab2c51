"""The out-of-scope guard at inference: scores stored, flagged images kept out of the answer."""

import csv
import hashlib
import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from inference.models import CaseResult, Prediction
from inference.services.registry import model_version_deploy, model_version_import
from inference.tasks import analyse_case
from runtime.predictor import Predictor
from tests.factories import ModelVersionFactory, case_with_images
from tests.helpers import TINY_CLASSES as CLASSES
from tests.helpers import TINY_SIZE as SIZE
from tests.helpers import manifest_fields, noise_png, training_report, verification_batch


def _solid_png(colour=(255, 255, 255), size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _named_model(seed: int):
    """The tiny test CNN with its output layer named as the pipeline names it."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A format-2 artifact whose guard was fitted on random-noise 'smears'."""
    from runtime.artifact import write_artifact
    from runtime.guard import feature_layer
    from runtime.preprocess import load_rgb, resize_for_model
    from training.ood import FeatureExtractor, fit_features

    model = _named_model(5)
    layer = feature_layer(model)

    def batch(seeds):
        return np.stack([resize_for_model(load_rgb(noise_png(s)), SIZE) for s in seeds])

    extract = FeatureExtractor(model, layer)
    f_tr, p_tr = extract(batch(range(100, 160)))
    f_va, _ = extract(batch(range(200, 230)))
    guard = fit_features(f_tr, p_tr.argmax(1), f_va, layer=layer, n_classes=len(CLASSES))
    # These tests are about the plumbing, not the guard's quality (tests/validity): put the
    # threshold in the gap between the noise images they use and the solid colours.
    noise = guard.score(extract(batch([1, 2]))[0]).max()
    solids = np.stack(
        [resize_for_model(load_rgb(_solid_png(c)), SIZE) for c in ((255, 255, 255), (0, 0, 0))]
    )
    solid = guard.score(extract(solids)[0]).min()
    assert solid > noise
    guard.threshold = float((noise + solid) / 2)
    fields = manifest_fields(
        name="guarded",
        version="1",
        split_sizes={"train": 60, "validation": 30, "test": 1},
        temperature=1.0,
        confidence_threshold=0.0,
    )
    folder, _ = write_artifact(
        model,
        tmp_path_factory.mktemp("guarded"),
        manifest_fields=fields,
        verification=verification_batch(SIZE),
        guard=guard,
    )
    return folder


def test_the_predictor_scores_in_one_call_and_flags_an_outlier(guarded):
    predictor = Predictor.load(guarded)
    noise = predictor.prepare(noise_png(1))
    white = predictor.prepare(_solid_png())
    assert predictor.guard is not None  # the artifact was written with one
    threshold = predictor.guard.threshold
    (inside, outside), _ = predictor.predict([noise, white])
    assert inside.ood_score is not None and inside.ood_score <= threshold
    assert not inside.out_of_scope
    assert outside.out_of_scope and outside.ood_score is not None
    assert outside.ood_score > threshold
    # a one-layer guard has one check to name: its layer
    assert (inside.ood_reason, outside.ood_reason) == ("", "layer pool")
    # the scores come from the same compiled call as the probabilities
    probs, scores = predictor.scored(np.stack([noise, white]))
    assert scores == pytest.approx([inside.ood_score, outside.ood_score])
    assert probs.shape == (2, len(CLASSES))


def test_a_model_without_a_guard_leaves_the_score_empty(artifacts):
    predictor = Predictor.load(artifacts["v1"])
    (answer,), _ = predictor.predict([predictor.prepare(noise_png(1))])
    assert answer.ood_score is None and answer.out_of_scope is False and answer.ood_reason == ""


@pytest.mark.django_db
def test_analysis_stores_the_score_and_leaves_flagged_images_out(guarded, client_for, alice, bob):
    version = model_version_import(source=guarded)
    model_version_deploy(model_version=version, actor=None, reason="test")
    case = case_with_images(noise_png(1), noise_png(2), _solid_png())
    analyse_case.apply(args=(case.pk,)).get()
    rows = {p.image.sha256: p for p in Prediction.objects.filter(image__case=case)}
    scores = [p.ood_score for p in rows.values() if p.ood_score is not None]
    assert len(scores) == len(rows)  # every image has a score
    flagged = [p for p in rows.values() if p.out_of_scope]
    assert len(flagged) == 1 and flagged[0].image.sha256 == hashlib.sha256(_solid_png()).hexdigest()
    assert flagged[0].ood_score == max(scores)
    result = CaseResult.objects.get(case=case, model_version=version)
    assert result.out_of_scope_count == 1 and result.images_count == 3
    assert result.needs_review  # a human looks at what the model was not made for
    kept = [p for p in rows.values() if not p.out_of_scope]
    mean = sum(p.probabilities[result.label] for p in kept) / len(kept)
    assert result.confidence == pytest.approx(mean)

    page = client_for(alice).get(reverse("clinic:case_detail", args=[case.pk]))
    html = page.content.decode()
    assert html.count("data-out-of-scope") == 1 and "no subtype given" in html
    review = client_for(bob).get(reverse("reviews:case_review", args=[case.pk]))
    html = review.content.decode()
    assert html.count("data-out-of-scope") == 1 and "1 out of scope" in html
    report = client_for(bob).get(reverse("reviews:case_report", args=[case.pk]))
    assert "<strong>out of scope</strong>" in report.content.decode()


@pytest.mark.django_db
def test_the_check_that_flagged_an_image_is_stored_and_shown_wherever_the_flag_is(
    guarded, client_for, api_for, alice, bob
):
    version = model_version_import(source=guarded)
    model_version_deploy(model_version=version, actor=None, reason="test")
    case = case_with_images(noise_png(1), _solid_png())
    analyse_case.apply(args=(case.pk,)).get()
    reasons = {p.out_of_scope: p.ood_reason for p in Prediction.objects.filter(image__case=case)}
    assert reasons == {True: "layer pool", False: ""}
    why = "<span data-ood-reason>layer pool</span>: unlike the training smears in what the model"
    for page in (
        client_for(alice).get(reverse("clinic:case_detail", args=[case.pk])),
        client_for(bob).get(reverse("reviews:case_review", args=[case.pk])),
    ):
        html = page.content.decode()
        assert html.count("data-ood-reason") == 1 and why in html
    report = client_for(bob).get(reverse("reviews:case_report", args=[case.pk])).content.decode()
    assert "flagged by <span data-ood-reason>layer pool</span>" in report
    audit = client_for(bob).get("/reviews/predictions/").content.decode()
    assert audit.count("data-ood-reason") == 1
    body = b"".join(client_for(bob).get("/reviews/predictions/export.csv").streaming_content)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert sorted((r["out_of_scope"], r["ood_reason"]) for r in rows) == [
        ("False", ""),
        ("True", "layer pool"),
    ]
    api = api_for(alice).get("/api/predictions/", {"case": case.pk}).json()["results"]
    assert sorted((p["out_of_scope"], p["ood_reason"]) for p in api) == [
        (False, ""),
        (True, "layer pool"),
    ]


@pytest.mark.django_db
def test_a_case_of_only_non_smears_gets_no_subtype_and_needs_review(guarded, client_for, alice):
    version = model_version_import(source=guarded)
    model_version_deploy(model_version=version, actor=None, reason="test")
    case = case_with_images(_solid_png(), _solid_png((0, 0, 0)))
    analyse_case.apply(args=(case.pk,)).get()
    result = CaseResult.objects.get(case=case, model_version=version)
    assert result.out_of_scope_count == 2 and result.needs_review
    html = client_for(alice).get(reverse("clinic:case_detail", args=[case.pk])).content.decode()
    assert "No image looks like the smears this model was trained on" in html


@pytest.mark.django_db
def test_the_registry_report_page_shows_robustness_sources_and_the_guard(client_for, admin_user):
    report = training_report()
    report["robustness"] = {
        "seed": 42,
        "clean": {"accuracy": 0.9, "macro_f1": 0.88},
        "shifts": [
            {
                "kind": "grayscale",
                "strength": 1.0,
                "label": "grayscale",
                "accuracy": 0.41,
                "macro_f1": 0.3,
                "accuracy_drop": 0.49,
                "out_of_scope": 0.625,
            }
        ],
    }
    report["per_source"] = {"lab-north": {"n": 12, "accuracy": 0.75, "macro_f1": 0.7}}
    report["ood"] = {
        "method": "mahalanobis",
        "layer": "dense2",
        "threshold": 20.9,
        "quantile": 0.99,
        "shrinkage": 0.1,
        "flagged": {"test": 0.005, "generated noise": 1.0},
    }
    version = ModelVersionFactory.create(name="cnn", version="7", report=report)
    page = client_for(admin_user).get(f"/registry/{version.pk}/").content.decode()
    for expected in (
        "Robustness to colour and stain shifts",
        "grayscale",
        "41.0%",
        "62.5%",
        "Per source",
        "lab-north",
        "Out-of-scope guard",
        "generated noise",
        "dense2",
    ):
        assert expected in page, expected
