"""Tiny end-to-end run: train -> evaluate -> package -> load_packaged -> predict."""

import json
import shutil

import numpy as np
import pytest

from runtime.artifact import ArtifactError, Manifest, load_packaged
from runtime.preprocess import load_rgb, resize_for_model
from tests.helpers import verification_batch


@pytest.mark.slow
def test_a_run_writes_its_folder_and_a_packaged_artifact(tiny_run):
    run = tiny_run.run_dir
    for name in (
        "split.json",
        "train.log",
        "history.csv",
        "report.json",
        "report.html",
        "confusion_matrix.svg",
        "curves.svg",
        "reliability.svg",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
    ):
        assert (run / name).is_file(), name
    art = tiny_run.artifact_dir
    assert art.name == "tiny-0.1"
    for name in (
        "model.keras",
        "manifest.json",
        "report.json",
        "report.html",
        "confusion_matrix.svg",
        "curves.svg",
        "reliability.svg",
    ):
        assert (art / name).is_file(), name
    # the artifact carries no optimizer state: about a third of the checkpoint with Adam
    assert (art / "model.keras").stat().st_size < 0.6 * (
        run / "checkpoints/best.keras"
    ).stat().st_size
    html = (art / "report.html").read_text()
    assert "NOT FOR CLINICAL USE" in html and "<svg" in html


@pytest.mark.slow
def test_a_run_packages_its_graph_verified_on_test_images_and_its_int8_verdict(tiny_run):
    manifest = Manifest.from_dict(json.loads((tiny_run.artifact_dir / "manifest.json").read_text()))
    assert manifest.onnx is not None and manifest.int8 is not None
    check = manifest.onnx["verification"]
    test_images = manifest.split_sizes["test"]
    assert check["images"] == min(test_images, 32) and "test split" in check["source"]
    assert check["max_abs_diff"] <= 1e-4
    int8 = manifest.int8
    assert int8["test_images"] == test_images and "training split" in int8["calibration"]["source"]
    within = int8["fp32_accuracy"] - int8["accuracy"] <= 0.005 and int8["agreement"] >= 0.99
    assert int8["status"] == ("accepted" if within else "refused")
    assert (tiny_run.artifact_dir / "model.int8.onnx").exists() == within


def test_the_manifest_has_every_contract_key(tiny_run):
    raw = json.loads((tiny_run.artifact_dir / "manifest.json").read_text())
    for key in (
        "name",
        "version",
        "architecture",
        "classes",
        "input_size",
        "dataset_fingerprint",
        "split_sizes",
        "metrics",
        "temperature",
        "confidence_threshold",
        "heatmap_layer",
        "created",
        "content_hash",
        "synthetic",
        "format_version",
        "onnx",
    ):
        assert key in raw, key
    assert raw["classes"] == ["ALL", "AML", "CLL", "CML", "healthy"]
    assert raw["synthetic"] is True and raw["format_version"] == 3
    assert raw["content_hash"].startswith("sha256:")
    assert raw["created"].endswith("Z")
    assert set(raw["split_sizes"]) == {"train", "validation", "test"}
    assert {"accuracy", "macro_f1", "ece_before", "ece_after"} <= set(raw["metrics"])
    assert Manifest.from_dict(raw).to_dict()["classes"] == raw["classes"]


@pytest.mark.slow
def test_load_packaged_then_predict_on_real_decoded_images(tiny_run, synthetic_dir):
    model, manifest = load_packaged(tiny_run.artifact_dir)
    files = sorted(synthetic_dir.rglob("*.png"))[:4]
    batch = np.stack(
        [resize_for_model(load_rgb(f.read_bytes()), manifest.input_size) for f in files]
    )
    assert batch.dtype == np.uint8
    probs = np.asarray(model.predict(batch, verbose=0))
    assert probs.shape == (4, len(manifest.classes))
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    layer = model.get_layer(manifest.heatmap_layer)
    assert len(layer.output.shape) == 4


@pytest.mark.slow
def test_load_packaged_refuses_a_tampered_model(tiny_run, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(tiny_run.artifact_dir, copy)
    with (copy / "model.keras").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="content hash"):
        load_packaged(copy)


@pytest.mark.slow
def test_load_packaged_refuses_missing_or_broken_files(tiny_run, tmp_path):
    with pytest.raises(ArtifactError, match="no such"):
        load_packaged(tmp_path / "nowhere")
    copy = tmp_path / "art"
    shutil.copytree(tiny_run.artifact_dir, copy)
    (copy / "model.keras").unlink()
    with pytest.raises(ArtifactError, match=r"no model\.keras"):
        load_packaged(copy)
    shutil.copy(tiny_run.artifact_dir / "model.keras", copy / "model.keras")
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_packaged(copy)


@pytest.mark.slow
def test_load_packaged_refuses_a_class_count_mismatch(tiny_run, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(tiny_run.artifact_dir, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["classes"] = raw["classes"][:-1]
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="classes"):
        load_packaged(copy)


@pytest.mark.slow
def test_load_packaged_refuses_an_unloadable_model(tiny_run, tmp_path):
    from runtime.artifact import sha256_file

    copy = tmp_path / "art"
    shutil.copytree(tiny_run.artifact_dir, copy)
    (copy / "model.keras").write_bytes(b"PK\x03\x04 not really a keras zip")
    raw = json.loads((copy / "manifest.json").read_text())
    raw["content_hash"] = sha256_file(copy / "model.keras")
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="Keras cannot load"):
        load_packaged(copy)


@pytest.mark.slow
def test_evaluate_rescores_the_artifact_on_the_saved_test_split(tiny_run, tmp_path):
    from training.cli import main

    assert (
        main(
            [
                "evaluate",
                str(tiny_run.artifact_dir),
                "--run",
                str(tiny_run.run_dir),
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    original = tiny_run.report["evaluation"]["test"]
    assert report["evaluation"]["test"]["accuracy"] == pytest.approx(original["accuracy"])
    assert report["evaluation"]["test"]["n"] == original["n"]
    assert (tmp_path / "ev" / "report.html").is_file()
    # the re-evaluation opens with the same colour-blind check as the training report
    assert report["colour_blind"] == pytest.approx(tiny_run.report["colour_blind"])
    assert 'id="colour-blind"' in (tmp_path / "ev" / "report.html").read_text()


@pytest.mark.slow
def test_a_second_package_with_the_same_version_is_refused(tiny_run):
    import keras

    from runtime.artifact import write_artifact

    fields = json.loads((tiny_run.artifact_dir / "manifest.json").read_text())
    model = keras.saving.load_model(tiny_run.artifact_dir / "model.keras", compile=False)
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifact(
            model,
            tiny_run.artifact_dir.parent,
            manifest_fields=fields,
            verification=verification_batch(fields["input_size"]),
        )


@pytest.mark.slow
def test_grad_cam_can_reach_the_heatmap_layer_of_a_loaded_artifact(tiny_run):
    import keras
    import tensorflow as tf

    model, manifest = load_packaged(tiny_run.artifact_dir)
    grad_model = keras.Model(
        model.inputs, [model.get_layer(manifest.heatmap_layer).output, model.output]
    )
    x = tf.constant(np.full((1, manifest.input_size, manifest.input_size, 3), 180, np.float32))
    with tf.GradientTape() as tape:
        fmap, probs = grad_model(x, training=False)
        score = probs[:, int(tf.argmax(probs[0]))]
    grads = tape.gradient(score, fmap)
    assert grads is not None and grads.shape == fmap.shape


@pytest.mark.slow
def test_pretrained_weights_train_head_first_then_fine_tune(synthetic_dir, tmp_path):
    """A local weights file drives the freeze-then-fine-tune schedule (no download)."""
    import keras

    from training.train import TrainConfig, run_training

    source = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = tmp_path / "mobilenet_notop.weights.h5"
    source.save_weights(weights)
    cfg = TrainConfig(
        data_dir=str(synthetic_dir),
        arch="mobilenet",
        weights=str(weights),
        img_size=32,
        epochs=2,
        head_epochs=1,
        patience=2,
        batch_size=16,
        out=str(tmp_path / "runs"),
        name="pre",
        version="1",
    )
    result = run_training(cfg)
    phases = result.report["training"]["phases"]
    assert [p["phase"] for p in phases] == ["head", "fine-tune"]
    assert phases[1]["lr"] < phases[0]["lr"]
    assert result.report["training"]["epochs_run"] == 2


def test_batchnorm_re_estimation_averages_clean_batch_statistics():
    import keras

    from training.train import recompute_batchnorm

    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3)
    bn = keras.layers.BatchNormalization(momentum=0.9)
    model = keras.Model(inputs, bn(conv(inputs)))
    x = np.random.default_rng(0).uniform(0, 255, (64, 8, 8, 3)).astype("float32")
    kernel = [w.copy() for w in conv.get_weights()]
    assert recompute_batchnorm(model, x, 16) == 1
    features = np.asarray(conv(x))
    batches = [features[i : i + 16] for i in range(0, 64, 16)]
    assert np.allclose(
        bn.moving_mean, np.mean([b.mean(axis=(0, 1, 2)) for b in batches], 0), rtol=1e-4
    )
    assert np.allclose(
        bn.moving_variance, np.mean([b.var(axis=(0, 1, 2)) for b in batches], 0), rtol=1e-3
    )
    assert bn.momentum == 0.9  # restored
    assert all(np.array_equal(a, b) for a, b in zip(kernel, conv.get_weights(), strict=True))


@pytest.mark.slow
def test_a_spent_time_budget_stops_fitting_but_the_run_still_evaluates_and_packages(
    synthetic_dir, tmp_path
):
    from training.train import TrainConfig, run_training

    cfg = TrainConfig(
        data_dir=str(synthetic_dir),
        img_size=32,
        epochs=5,
        patience=5,
        batch_size=16,
        seed=3,
        out=str(tmp_path),
        name="budget",
        version="1",
        max_fit_minutes=1e-6,  # spent before the first epoch ends
    )
    result = run_training(cfg)
    assert result.report["training"]["epochs_run"] == 1
    assert (result.artifact_dir / "manifest.json").is_file()
    assert "fitting time budget is spent" in (result.run_dir / "train.log").read_text()
