"""The Django-free predictor core: one compiled batch, calibrated, nothing from Django."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from inference.predictor import (
    ArtifactError,
    ImageDecodeError,
    Predictor,
    cached_predictor,
    calibrate,
)
from tests.helpers import TINY_CLASSES as CLASSES
from tests.helpers import noise_png, package


def test_it_classifies_a_batch_without_importing_django(artifacts):
    script = textwrap.dedent(
        f"""
        import sys
        from inference.predictor import Predictor
        predictor = Predictor.load({str(artifacts["v1"])!r})
        images = [predictor.prepare(bytes.fromhex({noise_png(1).hex()!r}))] * 3
        answers, ms = predictor.predict(images)
        assert len(answers) == 3 and ms > 0
        assert "django" not in sys.modules, "the predictor core imported Django"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_temperature_softens_the_probabilities_and_keeps_their_order():
    p = np.array([[0.7, 0.2, 0.1]])
    soft = calibrate(p, 2.0)
    assert soft.sum() == pytest.approx(1.0)
    assert soft[0, 0] < 0.7 and list(np.argsort(soft[0])) == list(np.argsort(p[0]))
    assert calibrate(p, 1.0) == pytest.approx(p)


def test_batch_answers_equal_one_by_one_answers_and_are_calibrated(artifacts):
    predictor = Predictor.load(artifacts["v1"])
    images = [predictor.prepare(noise_png(seed)) for seed in range(5)]
    together, _ = predictor.predict(images)
    alone = [predictor.predict([image])[0][0] for image in images]
    for a, b in zip(together, alone, strict=True):
        assert a.label == b.label
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    raw = predictor.probabilities(np.stack(images[:1]))
    expected = calibrate(raw, 1.5)[0]
    assert list(together[0].probabilities) == CLASSES
    assert together[0].probabilities["AML"] == pytest.approx(expected[2], abs=1e-6)


def test_the_cache_loads_a_version_once_and_checks_its_hash(tmp_path):
    from training.package import read_manifest

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
    prepared = predictor.prepare_many(blobs)
    assert np.array_equal(prepared[0], predictor.prepare(blobs[0]))
    assert isinstance(prepared[1], ImageDecodeError)
    assert np.array_equal(prepared[2], predictor.prepare(blobs[2]))
