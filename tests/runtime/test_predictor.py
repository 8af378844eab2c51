"""The Django-free predictor: one compiled batch, calibrated, cached per content hash."""

import numpy as np
import pytest

from runtime.artifact import ArtifactError, read_manifest
from runtime.calibration import apply_temperature
from runtime.predictor import Predictor, cached_predictor
from runtime.preprocess import ImageDecodeError
from tests.helpers import TINY_CLASSES as CLASSES
from tests.helpers import noise_png, package


def test_batch_answers_equal_one_by_one_answers_and_are_calibrated(artifacts):
    predictor = Predictor.load(artifacts["v1"])
    images = [predictor.prepare(noise_png(seed)) for seed in range(5)]
    together, ms = predictor.predict(images)
    assert len(together) == 5 and ms > 0
    alone = [predictor.predict([image])[0][0] for image in images]
    for a, b in zip(together, alone, strict=True):
        assert a.label == b.label
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    raw = predictor.probabilities(np.stack(images[:1]))
    expected = apply_temperature(raw, 1.5)[0]
    assert list(together[0].probabilities) == CLASSES
    assert together[0].probabilities["AML"] == pytest.approx(expected[2], abs=1e-6)


def test_the_cache_loads_a_version_once_and_checks_its_hash(tmp_path):
    folder = package(tmp_path, version="cache-test", seed=7)  # weights no other test loads
    digest = read_manifest(folder).content_hash
    calls = []

    def fetch():
        calls.append(1)
        return folder

    assert cached_predictor(digest, fetch) is cached_predictor(digest, fetch)
    assert len(calls) == 1
    with pytest.raises(ArtifactError, match="does not match the registry"):
        cached_predictor("sha256:" + "0" * 64, lambda: folder)


def test_preparing_a_case_together_keeps_order_and_returns_each_bad_images_error(artifacts):
    predictor = Predictor.load(artifacts["v1"])
    blobs = [noise_png(1), b"not an image", noise_png(2)]
    first, bad, last = predictor.prepare_many(blobs)
    assert isinstance(first, np.ndarray) and np.array_equal(first, predictor.prepare(blobs[0]))
    assert isinstance(bad, ImageDecodeError)
    assert isinstance(last, np.ndarray) and np.array_equal(last, predictor.prepare(blobs[2]))
