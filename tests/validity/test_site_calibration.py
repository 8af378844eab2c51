"""Site calibration packages a NEW version and never changes the original; the registry
shows both, with the accuracy before and after on the site's labelled sets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.artifact import ArtifactError, load_packaged, read_manifest, sha256_file
from training.synth import DEMO_CLASSES
from training.synth import generate as smears

SIZE = 32


def _bn_model():
    """A tiny CNN with BatchNorm, trained a few epochs on synthetic smears."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for i in (1, 2, 3):
        x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(8, activation="relu", name="dense2")(x)
    outputs = keras.layers.Dense(len(DEMO_CLASSES), activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    x_tr, y_tr = smears(DEMO_CLASSES, per_class=16, size=SIZE, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x_tr.astype("float32"), y_tr, epochs=5, batch_size=16, verbose=0)
    return model, x_tr, y_tr


def _write(folder: Path, images: np.ndarray, labels=None) -> Path:
    for i, img in enumerate(images):
        sub = folder if labels is None else folder / DEMO_CLASSES[int(labels[i])]
        sub.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="PNG")
        (sub / f"{i:03d}.png").write_bytes(buffer.getvalue())
    return folder


def _darker(images: np.ndarray) -> np.ndarray:
    """The site's stain: darker and bluer than training (a shift BatchNorm can absorb)."""
    shifted = images.astype(np.float64) * np.array([0.7, 0.75, 0.95])
    return np.clip(shifted, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from runtime.artifact import write_artifact
    from tests.helpers import manifest_fields, verification_batch
    from training.ood import fit_guard
    from training.site_calibration import site_calibrate

    root = tmp_path_factory.mktemp("site")
    model, x_tr, y_tr = _bn_model()
    x_va, _ = smears(DEMO_CLASSES, per_class=6, size=SIZE, seed=1)
    guard = fit_guard(model, x_tr, y_tr, x_va, len(DEMO_CLASSES), stain_augment=False)
    original, _ = write_artifact(
        model,
        root / "models",
        manifest_fields=manifest_fields(classes=list(DEMO_CLASSES), heatmap_layer="conv3"),
        verification=verification_batch(SIZE),
        guard=guard,
    )
    (original / "report.json").write_text(json.dumps({"name": "tiny"}), encoding="utf-8")
    before = {p.name: sha256_file(p) for p in original.iterdir()}
    site_x, _ = smears(DEMO_CLASSES, per_class=10, size=SIZE, seed=5)
    lab_x, lab_y = smears(DEMO_CLASSES, per_class=6, size=SIZE, seed=6)
    site = _write(root / "lab-b", _darker(site_x))
    labelled = _write(root / "lab-b-labelled", _darker(lab_x), lab_y)
    folder, facts = site_calibrate(
        original, site, out=root / "models", labelled=labelled, site="Lab B"
    )
    return original, before, folder, facts


@pytest.mark.slow
def test_calibration_never_changes_the_original(calibrated):
    original, before, folder, _ = calibrated
    assert {p.name: sha256_file(p) for p in original.iterdir()} == before
    assert folder != original and folder.parent == original.parent


@pytest.mark.slow
def test_the_new_version_has_its_own_version_lineage_graph_and_evaluation(calibrated):
    from runtime.predictor import Predictor

    original, _, folder, facts = calibrated
    old, new = read_manifest(original), read_manifest(folder)
    assert new.version == "v1-site-lab-b" and new.version != old.version
    assert new.content_hash != old.content_hash  # other BatchNorm statistics, other file
    assert new.extra["calibrated_from"] == f"{old.name} {old.version}"
    origin = new.extra["site_calibration"]["calibrated_from"]
    assert origin == {"name": old.name, "version": old.version, "content_hash": old.content_hash}
    assert new.onnx is not None and old.onnx is not None
    assert new.onnx["sha256"] != old.onnx["sha256"]
    assert "generated smears" in new.onnx["verification"]["source"]  # not the site's images
    Predictor.load(folder)  # its own graph, verified against its own Keras model
    report = json.loads((folder / "report.json").read_text())
    assert report["site_calibration"]["images"] == facts["images"] == 50
    lab = report["site_calibration"]["labelled"]
    assert lab["before"]["n"] == lab["after"]["n"] == 30
    assert 0 <= lab["before"]["accuracy"] <= 1 and 0 <= lab["after"]["accuracy"] <= 1


@pytest.mark.slow
def test_only_the_batchnorm_statistics_change(calibrated):
    import keras

    original, _, folder, _ = calibrated
    a, _ = load_packaged(original)
    b, _ = load_packaged(folder)
    for la, lb in zip(a.layers, b.layers, strict=True):
        wa, wb = la.get_weights(), lb.get_weights()
        if isinstance(la, keras.layers.BatchNormalization):
            gamma_beta = (0, 1)
            for i in gamma_beta:
                assert np.array_equal(wa[i], wb[i])
            assert not np.allclose(wa[2], wb[2])  # moving mean: from the site's images
        else:
            assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))


def test_too_few_site_images_are_refused(tmp_path):
    from tests.helpers import package
    from training.site_calibration import site_calibrate

    original = package(tmp_path / "models", version="v1", seed=1)
    site = _write(tmp_path / "site", smears(DEMO_CLASSES, per_class=2, size=SIZE, seed=0)[0])
    with pytest.raises(ArtifactError, match="at least 32"):
        site_calibrate(original, site, out=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.django_db
def test_the_registry_shows_both_versions_and_the_accuracy_before_and_after(client_for, admin_user):
    from django.urls import reverse

    from inference.models import ModelEvaluation, ModelVersion
    from tests.factories import SUBTYPES as CLASSES
    from tests.factories import ModelVersionFactory

    parent = ModelVersionFactory.create(name="cnn", version="1")
    origin = {"name": "cnn", "version": "1", "content_hash": parent.content_hash}
    child = ModelVersionFactory.create(
        name="cnn",
        version="1-site-lab-b",
        status=ModelVersion.Status.REGISTERED,
        manifest={
            "heatmap_layer": "conv3",
            "extra": {"site_calibration": {"calibrated_from": origin, "site": "lab-b"}},
        },
        report={"site_calibration": {"site": "lab-b", "images": 515, "calibrated_from": origin}},
    )
    for version, accuracy in ((parent, 0.346), (child, 0.912)):
        ModelEvaluation.objects.create(
            model_version=version,
            dataset="/data/eval/lab-b-labelled",
            status=ModelEvaluation.Status.DONE,
            dataset_fingerprint="f" * 64,
            images_count=644,
            accuracy=accuracy,
            result={
                "metrics": {
                    "accuracy": accuracy,
                    "confusion_matrix": np.eye(len(CLASSES), dtype=int).tolist(),
                    "per_class": {c: {} for c in CLASSES},
                },
                "classes_present": list(CLASSES),
                "unreadable_count": 0,
                "colour_baseline": {"skipped": "not run in this test"},
                "out_of_scope": {"fraction": 0.1},
            },
        )
    client = client_for(admin_user)
    page = client.get(reverse("registry:detail", args=[child.pk])).content.decode()
    assert "Calibrated from" in page and reverse("registry:detail", args=[parent.pk]) in page
    assert "34.6" in page and "91.2" in page  # before and after, side by side
    page = client.get(reverse("registry:detail", args=[parent.pk])).content.decode()
    assert "Site-calibrated versions of this model" in page and "1-site-lab-b" in page
    assert "91.2" in page
