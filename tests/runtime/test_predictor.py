"""The Django-free predictor: one compiled batch, calibrated, cached per content hash."""

import threading

import numpy as np
import pytest

import runtime.predictor
from runtime.artifact import ArtifactError, read_manifest
from runtime.calibration import apply_temperature
from runtime.export import onnx_outputs
from runtime.predictor import Predictor, cached_predictor, run_batch
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


def test_a_cases_runs_go_side_by_side_and_answer_as_one_after_another(artifacts, monkeypatch):
    """The runs of a case share the pool's threads, each on a one-thread session, and the
    answers come back in the images' order, equal to the same runs made in turn."""
    predictor = Predictor.load(artifacts["v1"])
    predictor.run_batch = 2
    images = np.stack([predictor.prepare(noise_png(seed)) for seed in range(7)])
    threads = []

    def recorded(session, chunk):
        threads.append(threading.current_thread().name)
        return onnx_outputs(session, chunk)

    monkeypatch.setattr(runtime.predictor, "onnx_outputs", recorded)
    probs, scores = predictor.scored(images)

    assert len(threads) == 4 and all(name.startswith("predict") for name in threads)
    one_by_one = np.concatenate(
        [onnx_outputs(predictor.session, images[i : i + 2]).probabilities for i in (0, 2, 4, 6)]
    )
    np.testing.assert_array_equal(probs, one_by_one)
    assert scores is None
    assert predictor.session.get_session_options().intra_op_num_threads == 1


def test_a_run_holds_one_224_px_image_or_several_smaller_ones():
    assert run_batch(224) == 1 and run_batch(299) == 1
    assert run_batch(64) == 12 and run_batch(32) == 49
