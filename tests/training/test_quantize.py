"""The int8 variant: kept when it keeps the accuracy, refused with the reason when not."""

import numpy as np
import pytest

from runtime.artifact import INT8_FILE, read_manifest
from runtime.predictor import Predictor
from tests.helpers import colour_images, package, trained_tiny_model
from training.quantize import MAX_ACCURACY_DROP, MIN_AGREEMENT, int8_variant


def test_an_int8_variant_within_the_limits_is_packaged_with_its_figures(int8_artifact):
    entry = read_manifest(int8_artifact).int8
    assert (
        entry is not None
        and entry["status"] == "accepted"
        and (int8_artifact / INT8_FILE).is_file()
    )
    assert entry["fp32_accuracy"] - entry["accuracy"] <= MAX_ACCURACY_DROP
    assert entry["agreement"] >= MIN_AGREEMENT and entry["test_images"] == 100
    assert entry["calibration"]["images"] == 64
    fp32, int8 = Predictor.load(int8_artifact), Predictor.load(int8_artifact, variant="int8")
    images, labels = colour_images(20, seed=7)
    assert (int8.probabilities(images).argmax(1) == labels).all()
    assert (fp32.probabilities(images).argmax(1) == labels).all()


def test_a_badly_calibrated_int8_variant_is_refused_and_not_written(tmp_path):
    test_x, test_y = colour_images(100, seed=1)

    def finish(folder, values):
        # Calibrated on near-black frames: real images' activations fall far outside
        # the ranges, and the variant's answers collapse.
        values["int8"] = int8_variant(
            folder,
            values["onnx"],
            calibration=np.full((16, 32, 32, 3), 1, np.uint8),
            calibration_source="near-black frames (deliberately wrong)",
            test_images=test_x,
            test_labels=test_y,
        )

    folder = package(tmp_path, version="bad", seed=3, model=trained_tiny_model(), finish=finish)
    entry = read_manifest(folder).int8
    assert entry is not None and entry["status"] == "refused"
    assert "points below fp32's" in entry["reason"] and "agrees with fp32's" in entry["reason"]
    assert entry["fp32_accuracy"] == 1.0 and entry["accuracy"] < 0.9
    assert not (folder / INT8_FILE).exists()
    with pytest.raises(Exception, match="no accepted int8 variant"):
        Predictor.load(folder, variant="int8")
