"""Test inputs that are not database rows: the shared real images, generated images and
uploads, labelled folders, and tiny packaged models written by the runtime's own
packaging code. Importing this module needs no Django (the runtime and training tests
use it too); the two helpers that build Django objects import it when called."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
TALEQANI = DATA_ROOT / "taleqani-all"
BCCD_IMAGES = DATA_ROOT / "bccd-smears" / "images"

# The classes and input size of the tiny test artifacts.
TINY_CLASSES = ["healthy", "ALL", "AML", "CLL", "CML"]
TINY_SIZE = 32


def persona_password(username: str) -> str:
    """The password of a test persona: long enough for the password rules."""
    return f"{username}-wardround-2026"


def totp_code(device) -> str:
    """The code an authenticator app shows now for this django-otp TOTP device; the next
    step's when this one was used already (the server takes each step once and allows one
    step of drift), waiting for the clock when even that one was used."""
    from django_otp.oath import hotp

    device.refresh_from_db()
    now = (int(time.time()) - device.t0) // device.step + device.drift
    t = max(now, device.last_t + 1)
    if t > now + device.tolerance:
        ready = (t - device.tolerance - device.drift) * device.step + device.t0
        time.sleep(max(0.0, ready - time.time()) + 0.1)
    return f"{hotp(device.bin_key, t, device.digits):0{device.digits}d}"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_python(code: str, *, timeout: float) -> subprocess.CompletedProcess:
    """Run code in a new interpreter that sees only this checkout: no Django settings, no
    virtualenv variables, so what it imports is what the code itself pulls in."""
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- images -------------------------------------------------------------------------


def smear_paths(count: int) -> list[Path]:
    """The first ``count`` real BCCD smear photographs (skips the test without them)."""
    paths = sorted(BCCD_IMAGES.glob("*.jpg"))[:count]
    if len(paths) < count:
        pytest.skip(f"the BCCD smear photographs are not in {BCCD_IMAGES}")
    return paths


def smear_bytes(index: int = 0) -> bytes:
    return smear_paths(index + 1)[index].read_bytes()


def image_bytes(fmt: str = "PNG", size=(40, 30), color=(200, 100, 150), **save) -> bytes:
    """A one-colour image in any Pillow format."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def noise_png(seed: int, size: int = 48) -> bytes:
    """A PNG of random pixels: a different, valid image for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data behind it."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def upload(name: str, data: bytes):
    """A file as a browser or API client posts it."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def as_uploads(*files: tuple[str, bytes]):
    """(name, bytes) pairs as the cases services take them."""
    from cases.services import Upload

    return [Upload(stream=io.BytesIO(data), name=name) for name, data in files]


def labelled_folder(root: Path, per_class: dict[str, list[bytes]]) -> Path:
    """A site's labelled set: ``root/<class>/<i>.png`` from the given image bytes."""
    for label, images in per_class.items():
        (root / label).mkdir(parents=True)
        for i, data in enumerate(images):
            (root / label / f"{i}.png").write_bytes(data)
    return root


def generated_set(root: Path) -> Path:
    """Four generated images each of healthy, ALL and AML: three of the tiny model's five."""
    labels = ["healthy", "ALL", "AML"]
    return labelled_folder(
        root, {label: [noise_png(10 * k + i) for i in range(4)] for k, label in enumerate(labels)}
    )


@contextmanager
def tmpfs_mounted(path: Path, *, size: str) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at ``path``, unmounted afterwards: a disk that fills
    up for real. Skips the test where this process may not mount (it needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def stored_files(root: Path) -> list[Path]:
    """Every file under ``root/media`` (the per-test media storage)."""
    media = root / "media"
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


# --- tiny model artifacts -------------------------------------------------------------


def tiny_model(seed: int, n_classes: int = len(TINY_CLASSES)):
    """A 32 px, four-filter CNN: enough to exercise loading, batching and Grad-CAM."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def manifest_fields(**overrides) -> dict:
    """A tiny artifact's manifest, as the training pipeline would write it."""
    return {
        "name": "tiny",
        "version": "v1",
        "architecture": "tiny-cnn",
        "classes": TINY_CLASSES,
        "input_size": TINY_SIZE,
        "dataset_fingerprint": "sha256:test",
        "split_sizes": {"train": 1, "validation": 1, "test": 1},
        "metrics": {"accuracy": 0.2, "macro_f1": 0.2, "ece_before": 0.1, "ece_after": 0.05},
        "temperature": 1.5,
        "confidence_threshold": 0.6,
        "heatmap_layer": "conv",
        "synthetic": True,
        **overrides,
    }


# One colour per tiny class: a task a four-filter CNN learns to 100 % in seconds, so that
# a confident model shows what quantisation keeps and what a bad calibration breaks.
TINY_COLOURS = np.array(
    [[220, 60, 60], [60, 220, 60], [60, 60, 220], [220, 220, 60], [60, 220, 220]]
)


def colour_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, class indices) of the tiny colour task, noisy, classes in turn."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % len(TINY_CLASSES)
    x = TINY_COLOURS[y][:, None, None, :] + rng.normal(0, 25, (count, TINY_SIZE, TINY_SIZE, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def trained_tiny_model(seed: int = 3):
    """The tiny CNN with a second convolution, trained on the colour task (about ten
    seconds on 2 cores). The second convolution is what its int8 variant quantises: the
    first, on RGB, and the output layer stay in float (``training.quantize.fp32_nodes``)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(TINY_CLASSES), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    x, y = colour_images(200, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=20, batch_size=32, verbose=0)
    return model


def verification_batch(size: int = TINY_SIZE, count: int = 8):
    """Real smear photographs prepared for a model of ``size`` px, as packaging takes them."""
    from runtime.artifact import VerificationBatch
    from runtime.preprocess import load_for_model

    images = np.stack([load_for_model(p.read_bytes(), size) for p in smear_paths(count)])
    return VerificationBatch(images, f"the first {count} BCCD smear photographs (tests)")


def package(out: Path, *, version: str, seed: int, model=None, finish=None, **overrides) -> Path:
    """A tiny artifact folder written by the training pipeline's own packaging function."""
    from runtime.artifact import write_artifact

    fields = manifest_fields(version=version, **overrides)
    if model is None:
        model = tiny_model(seed, n_classes=len(fields["classes"]))
    folder, _ = write_artifact(
        model, out, manifest_fields=fields, verification=verification_batch(), finish=finish
    )
    return folder


def training_report(classes=("ALL", "AML", "CLL", "CML"), *, synthetic: bool = False) -> dict:
    """A report with the structure training/train.py writes, numbers from the real evaluator."""
    import json

    from training.evaluate import full_evaluation

    classes = list(classes)
    rng = np.random.default_rng(0)
    y = np.arange(40) % len(classes)
    logits = rng.normal(size=(40, len(classes))) + 3 * np.eye(len(classes))[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    report = {
        "name": "cnn",
        "version": "1",
        "architecture": "tiny_cnn",
        "classes": classes,
        "input_size": 32,
        "created": "2025-01-01T00:00:00Z",
        "synthetic": synthetic,
        "config": {"seed": 1},
        "data": {"grouped": False, "sizes": {"train": 100, "validation": 40, "test": 40}},
        "training": {
            "epochs_run": 3,
            "history": {
                "accuracy": [0.4, 0.6, 0.7],
                "val_accuracy": [0.35, 0.55, 0.65],
                "loss": [1.3, 0.9, 0.7],
                "val_loss": [1.4, 1.0, 0.8],
            },
        },
        "baselines": {
            "colour_stats": {"accuracy": 0.3, "macro_f1": 0.28, "description": "mean colour"}
        },
        "baseline_warning": None,
        "evaluation": full_evaluation(probs, y, probs, y, classes),
    }
    return json.loads(json.dumps(report))


def compose_grace_s(service: str) -> int:
    """A docker-compose.yml service's stop_grace_period ("30s", "1m30s") in seconds."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    grace = str(services[service]["stop_grace_period"])
    minutes, _, seconds = grace.rpartition("m")
    return int(minutes or 0) * 60 + int(seconds.rstrip("s") or 0)
