"""Inference benchmark: ``python -m benchmarks.inference`` writes its section of
docs/benchmarks.md and its figures as docs/benchmarks.json.

Measured in one run on this machine:

1. images/s for MobileNet, ResNet-50 and CML-1 (224 px, random weights; speed does not
   depend on the values), all on the same cases of 16 uploads: the naive way (decode,
   resize, ``model.predict`` per image, as a simple Flask app does), a compiled
   TensorFlow batch call, a bare ONNX Runtime fp32 batch call (both from decoded
   pixels), and the worker's path (``Predictor``: decode, resize, ONNX Runtime, guard,
   calibration) on the fp32 graph and on its int8 variant; the heatmap worker's Grad-CAM
   rate beside them. Two kinds of upload: real smear photographs (the shared BCCD JPEGs,
   640x480) and 256 px random noise PNGs, the slowest kind of image per pixel to decode;
2. an analysis worker with ResNet-50 deployed: seconds from starting it to its first
   stored prediction (a case queued before it starts), and its resident memory then;
3. upload-to-stored-prediction latency, p50/p95, for single-image cases through the real
   upload service, broker and a warm solo worker: embedded (filesystem) broker and Redis;
4. a hot swap: the delay from a deploy to the new version's first stored prediction, and
   failed tasks and images while versions are swapped under a stream of uploads.

Parts 2 to 4 run in a throwaway VAR_DIR with SQLite and need Redis at REDIS_URL (default
redis://127.0.0.1:6379/0) for the Redis rows (part 2 uses the filesystem broker without
it). Parts 3 and 4 use the demo model's architecture (CML-1, 64 px, 5 classes).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.report import json_top_write, section_write

if TYPE_CHECKING:
    from runtime.preprocess import ImageDecodeError

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["healthy", "ALL", "AML", "CLL", "CML"]
CASE_SIZE = 16  # images per case on the worker path, and the ceiling's batch
MODELS = ("mobilenet", "resnet50", "cml1")
#: Repetitions of a full run and of ``--quick``; each can be set on the command line.
FULL = {"naive_images": 24, "cases": 8, "uploads": 30, "swap_uploads": 30}
QUICK = {"naive_images": 8, "cases": 3, "uploads": 10, "swap_uploads": 10}
SETTLE_S = 0.02  # idle before each timed call: the previous call's spinning threads stop


def manifest_fields(arch: str, size: int, version: str, heatmap_layer: str) -> dict:
    return {
        "name": f"bench-{arch}",
        "version": version,
        "architecture": arch,
        "classes": CLASSES,
        "input_size": size,
        "dataset_fingerprint": "none: untrained benchmark weights",
        "split_sizes": {"train": 0, "validation": 0, "test": 0},
        "metrics": {"accuracy": 0.0, "macro_f1": 0.0, "ece_before": 0.0, "ece_after": 0.0},
        "temperature": 1.3,
        "confidence_threshold": 0.6,
        "heatmap_layer": heatmap_layer,
        "synthetic": True,
    }


def package(
    arch: str,
    size: int,
    out: Path,
    *,
    version: str = "1",
    seed: int = 0,
    verify: list[bytes],
    guard_images: Sequence[bytes] = (),
) -> Path:
    """A packaged artifact with untrained weights; with ``guard_images``, an out-of-scope
    guard fitted on them, as every trained model has, so the worker path scores it."""
    import keras

    from runtime.artifact import VerificationBatch, write_artifact
    from runtime.preprocess import load_for_model
    from training.architectures import build_model, heatmap_layer
    from training.ood import fit_guard

    keras.utils.set_random_seed(seed)
    model = build_model(arch, len(CLASSES), size=size)
    batchnorms_randomise(model, seed)
    fields = manifest_fields(arch, size, version, heatmap_layer(model))
    batch = VerificationBatch(
        np.stack([load_for_model(b, size) for b in verify]), "the benchmark's images"
    )
    guard = None
    if guard_images:
        x = np.stack([load_for_model(b, size) for b in guard_images])
        y = np.arange(len(x)) % len(CLASSES)
        guard = fit_guard(model, x, y, x, n_classes=len(CLASSES))
    folder, _ = write_artifact(model, out, manifest_fields=fields, verification=batch, guard=guard)
    return folder


def batchnorms_randomise(model, seed: int) -> None:
    """Give every BatchNorm statistics and parameters as a trained one has (none exactly 0
    or 1; near them, so that ResNet-50's 53 stay finite).

    Speed does not depend on the weights' values, but fresh BatchNorms shift by exactly 0,
    and the ONNX converter drops an addition of zeros: the graph would then lack layers
    that every trained model's graph has (CML-1's shifts after each ReLU), and its int8
    variant would be quantised around a different graph.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = (np.asarray(w) for w in layer.get_weights())
            layer.set_weights(
                [rng.uniform(0.8, 1.25, gamma.shape), rng.normal(0, 0.1, beta.shape),
                 rng.normal(0, 0.05, mean.shape), rng.uniform(0.8, 1.25, var.shape)]
            )  # fmt: skip


def png(seed: int, size: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def all_decoded(prepared: list[np.ndarray | ImageDecodeError]) -> list[np.ndarray]:
    """A case's arrays from ``Predictor.prepare_many``; the benchmark's images all decode."""
    arrays = []
    for item in prepared:
        if isinstance(item, Exception):
            raise item
        arrays.append(item)
    return arrays


# --- 1. throughput (no Django) --------------------------------------------------------


def smear_jpegs(folder: Path, count: int = CASE_SIZE, skip: int = 0) -> list[bytes]:
    """Real smear photographs: what clinicians upload (JPEG, 640x480 for BCCD)."""
    files = sorted(folder.glob("*.jpg"))[skip : skip + count]
    if len(files) < count:
        raise SystemExit(f"need {skip + count} JPEG smears in {folder} (see ../shared/data)")
    return [f.read_bytes() for f in files]


def int8_predictor(folder: Path, calibration: list[bytes]):
    """The worker's Predictor on an int8 variant of the artifact's graph, calibrated on
    other smears. For speed only: random weights have no accuracy for the limits of
    ``training.quantize`` to keep, so this variant never enters a manifest."""
    from runtime.artifact import load_guard, read_manifest
    from runtime.export import onnx_session
    from runtime.preprocess import load_for_model
    from training.quantize import int8_convert

    manifest = read_manifest(folder)
    images = np.stack([load_for_model(b, manifest.input_size) for b in calibration])
    path = int8_convert(folder / "model.onnx", folder.parent / "bench.int8.onnx", images)
    from runtime.predictor import SESSION_THREADS, Predictor

    session = onnx_session(path, threads=SESSION_THREADS)
    return Predictor(session, manifest, load_guard(folder, manifest), variant="int8")


def throughput(
    arch: str,
    uploads: dict[str, list[bytes]],
    calibration: list[bytes],
    *,
    naive_images: int,
    cases: int,
    out: Path,
) -> list[dict]:
    """One row per kind of upload; the compiled and bare calls start from decoded pixels,
    so they are shared by both kinds.

    The bare ONNX Runtime call is ONNX Runtime as it comes: a session on the artifact's
    fp32 graph with every graph optimisation and its default threading (a model's layers
    split over every core), run one call after another on a ready uint8 batch, in the
    worker's batch size (``Predictor.run_batch``) and in one batch of 16. Worker / bare
    is then what the worker path adds (decoding and resizing, stacking, the guard,
    calibration, the answers) and what it saves (its runs side by side on the cores,
    each on one thread). Before each timed call the machine gets a moment to settle:
    ONNX Runtime's and TensorFlow's threads spin a little after a call, and would
    otherwise slow whichever path comes next.
    """
    import tensorflow as tf

    from runtime.artifact import load_guard, load_packaged, read_manifest
    from runtime.export import onnx_session
    from runtime.guard import feature_network
    from runtime.heatmaps import HeatmapModel
    from runtime.predictor import Predictor

    first = next(iter(uploads.values()))
    folder = package(arch, 224, out, verify=first, guard_images=calibration)
    fp32 = Predictor.load(folder)
    int8 = int8_predictor(folder, calibration)
    model, _ = load_packaged(folder, check_inference=False)
    gradcam = HeatmapModel.load(folder)

    naive = {}
    model.predict(fp32.prepare(first[0])[None], verbose=0)  # warm-up, as a server would
    for kind, blobs in uploads.items():
        started = time.perf_counter()
        for i in range(naive_images):
            model.predict(fp32.prepare(blobs[i % CASE_SIZE])[None], verbose=0)
        naive[kind] = naive_images / (time.perf_counter() - started)

    pixels = np.stack([fp32.prepare(b) for b in first])
    compiled = tf.function(lambda x: model(x, training=False))
    # The same work as the worker's graph: the guard's features beside the probabilities.
    guard = load_guard(folder, read_manifest(folder))
    assert guard is not None  # packaged with guard_images
    guard_net = feature_network(model, guard.spec)
    compiled_guard = tf.function(lambda x: guard_net(x, training=False))
    floats = tf.constant(pixels.astype(np.float32))

    plain = onnx_session(folder / "model.onnx")

    def bare(batch: int) -> Callable[[], object]:
        feed = [{"image": pixels[i : i + batch]} for i in range(0, len(pixels), batch)]
        return lambda: [plain.run(None, f) for f in feed]

    bare_worker_batch, bare_16 = bare(fp32.run_batch), bare(CASE_SIZE)

    def side_by_side() -> object:
        """The worker's own session on ready pixels, its runs side by side as it runs them:
        what the worker path costs beyond ONNX Runtime itself."""
        return fp32.scored(pixels)

    compiled(floats)
    compiled_guard(floats)
    bare_worker_batch()
    bare_16()
    side_by_side()
    labels = [a.label for a in fp32.predict(list(pixels))[0]]
    int8.predict(list(pixels))
    gradcam.maps(list(pixels), labels)

    def timed(call: Callable[[], object]) -> float:
        time.sleep(SETTLE_S)
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    # Interleaved, so that load from other processes drifts onto every path alike.
    worker = {k: dict.fromkeys(uploads, 0.0) for k in ("fp32", "int8")}
    decode_s = dict.fromkeys(uploads, 0.0)
    compiled_s = compiled_guard_s = bare_s = bare_16_s = side_s = heatmap_s = 0.0
    for _ in range(cases):
        for kind, blobs in uploads.items():
            for variant, predictor in (("fp32", fp32), ("int8", int8)):
                time.sleep(SETTLE_S)
                started = time.perf_counter()
                arrays = all_decoded(predictor.prepare_many(blobs))
                decoded = time.perf_counter()
                predictor.predict(arrays)
                worker[variant][kind] += time.perf_counter() - started
                if variant == "fp32":
                    decode_s[kind] += decoded - started
            compiled_s += timed(lambda: compiled(floats).numpy())
            compiled_guard_s += timed(lambda: [o.numpy() for o in compiled_guard(floats)])
            bare_s += timed(bare_worker_batch)
            bare_16_s += timed(bare_16)
            side_s += timed(side_by_side)
        heatmap_s += timed(partial(gradcam.maps, arrays, labels))
    images = cases * CASE_SIZE
    shared = len(uploads) * images
    costs = one_thread_costs(model, folder, fp32, int8, first, rounds=max(3, cases // 2))
    return [
        {
            "arch": arch,
            "uploads": kind,
            "naive": naive[kind],
            "tf_compiled": shared / compiled_s,
            "tf_compiled_guard": shared / compiled_guard_s,
            "bare_ort_fp32": shared / bare_s,
            "bare_ort_fp32_batch16": shared / bare_16_s,
            "worker_ort_fp32": shared / side_s,
            "run_batch": fp32.run_batch,
            "worker_fp32": images / worker["fp32"][kind],
            "worker_int8": images / worker["int8"][kind],
            "decode": decode_s[kind] / worker["fp32"][kind],
            "heatmaps": images / heatmap_s,
            **({"one_thread_ms": costs} if kind == "smear JPEGs" else {}),
        }
        for kind in uploads
    ]


def one_thread_costs(model, folder: Path, fp32, int8, smears: list[bytes], *, rounds: int) -> dict:
    """CPU milliseconds an image costs on one thread, by part of the worker's path: the
    model's graph alone (converted without the guard's outputs), what the guard adds to
    the graph (its taps and pixel statistics), and decoding and resizing a smear JPEG;
    and the int8 graph with the guard, as the worker runs it. The best of ``rounds``
    rounds of one image a run, so that other load counts least. With a thread per core
    busy, cores x 1000 / the sum of the first three bounds the worker's images/s.

    ``every_core``: the same parts (the fp32 and int8 graphs with the guard, decoding)
    with every core running its own copy of the round at once, as the worker's busy
    threads do: ms an image on each core. A part that the cores slow each other down on
    (memory, shared caches) costs more here than on one thread, and these costs bound the
    worker's int8 / fp32 on this machine."""
    from runtime.export import onnx_convert, onnx_session
    from runtime.predictor import SESSION_THREADS

    plain_path = folder.parent / f"{folder.name}.plain.onnx"
    plain_path.write_bytes(onnx_convert(model, fp32.input_size, None))
    plain = onnx_session(plain_path, threads=SESSION_THREADS)
    pixels = np.stack([fp32.prepare(b) for b in smears])
    cores = os.cpu_count() or 1

    def best_ms(call: Callable[[int], object], count: int, *, threads: int = 1) -> float:
        def one_round(_: object) -> None:
            for i in range(count):
                call(i)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_round, range(threads)))  # warms every thread's buffers
            times = []
            for _ in range(rounds):
                time.sleep(SETTLE_S)
                started = time.perf_counter()
                list(pool.map(one_round, range(threads)))
                times.append((time.perf_counter() - started) / count * 1000)
        return min(times)

    def graph_ms(session, *, threads: int = 1) -> float:
        return best_ms(
            lambda i: session.run(None, {"image": pixels[i : i + 1]}), len(pixels), threads=threads
        )

    def decode_ms(*, threads: int = 1) -> float:
        return best_ms(lambda i: fp32.prepare(smears[i]), len(smears), threads=threads)

    graph = graph_ms(plain)
    full = graph_ms(fp32.session)
    return {
        "graph": graph,
        "guard": full - graph,
        "decode": decode_ms(),
        "int8": graph_ms(int8.session),
        "every_core": {
            "fp32": graph_ms(fp32.session, threads=cores),
            "int8": graph_ms(int8.session, threads=cores),
            "decode": decode_ms(threads=cores),
        },
    }


# --- 2. an analysis worker's start and memory (a child process with Django) ------------


def worker_start(folder: Path, smears: list[bytes], redis_url: str) -> dict:
    """Start an analysis worker with ``folder``'s model deployed and a one-image case
    waiting: the seconds to its first stored prediction; then its resident memory after
    a case of ``smears`` (the most a worker holds: one chunk of a case at a time)."""
    with tempfile.TemporaryDirectory(prefix="leukweb-bench-start-") as tmp:
        broker = "redis" if _redis_up(redis_url) else "embedded"
        env = _bench_env(Path(tmp), broker, redis_url)
        out = Path(tmp) / "result.json"
        for i, smear in enumerate(smears):
            (Path(tmp) / f"smear-{i:02d}.jpg").write_bytes(smear)
        command = [
            sys.executable, "-m", "benchmarks.inference", "_worker_start",
            "--artifact", str(folder), "--out", str(out),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"broker": broker, "error": done.stderr.strip().splitlines()[-1:]}
        return {"broker": broker, **json.loads(out.read_text())}


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used: what its start costs on an idle
    machine, whatever the load beside it (one busy thread at a time, as a solo worker)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_start_child(artifact: Path, out: Path) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.services import user_create
    from cases.services import Upload, case_create
    from inference.models import Prediction
    from inference.services.registry import model_version_deploy, model_version_import
    from leukweb.celery import app as celery_app

    version = model_version_import(source=artifact, keras_check=False)
    model_version_deploy(model_version=version, actor=None, reason="benchmark")
    user, _ = user_create(username="bench", role="clinician", teams=["Bench"])
    celery_app.control.purge()
    smears = sorted(Path(settings.VAR_DIR).glob("smear-*.jpg"))

    def submit(identifier: str, files: list[Path]) -> None:
        case_create(
            user=user,
            new_patient={"team": user.teams.get(), "identifier": identifier},
            uploads=[Upload(io.BytesIO(f.read_bytes()), f.name) for f in files],
            submit=True,
        )

    submit("B-1", smears[:1])
    log = (Path(settings.VAR_DIR) / "worker.log").open("w")
    started = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leukweb", "worker", "--pool=solo",
         "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-n", "bench-start@%h", "--without-mingle",
         "--without-gossip", "--loglevel=WARNING"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = started + 120
        while not Prediction.objects.exists():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("no prediction from the worker")
            time.sleep(0.01)
        seconds = time.monotonic() - started
        cpu_seconds = _cpu_s(worker.pid)
        submit("B-2", smears)
        while Prediction.objects.count() < 1 + len(smears):
            if time.monotonic() > deadline + 300 or worker.poll() is not None:
                raise RuntimeError("the worker did not finish the second case")
            time.sleep(0.05)
        time.sleep(1)  # settled: the task has returned
        rss = _rss_mb(worker.pid)
        modules = Path(f"/proc/{worker.pid}/maps").read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "rss_mb": rss,
                "tensorflow_loaded": "_pywrap_tensorflow" in modules,
                "architecture": version.architecture,
            }
        )
    )


# --- 3 and 4. through Django, a broker and a real worker (a child process each) -------


def _bench_env(var: Path, broker: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="leukweb.settings",
        VAR_DIR=str(var),
        MEDIA_ROOT=str(var / "media"),
        MODELS_ROOT=str(var / "models"),
        CELERY_QUEUE="leukweb-bench",
        # Grad-CAM is measured in part 1; no heatmap worker runs here to consume them.
        INFERENCE_HEATMAPS="False",
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    if broker == "redis":
        env["REDIS_URL"] = redis_url
    return env


def through_worker(broker: str, *, uploads: int, swap_uploads: int, redis_url: str) -> dict:
    """Run part 2 and 3 in a child with its own settings (a fresh VAR_DIR and database)."""
    with tempfile.TemporaryDirectory(prefix=f"leukweb-bench-{broker}-") as tmp:
        env = _bench_env(Path(tmp), broker, redis_url)
        out = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "benchmarks.inference", "_through_worker",
            "--uploads", str(uploads), "--swap-uploads", str(swap_uploads), "--out", str(out),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"broker": broker, "error": done.stderr.strip().splitlines()[-1:]}
        return json.loads(out.read_text())


def _through_worker_child(uploads: int, swap_uploads: int, out: Path) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from django.conf import settings

    from accounts.services import user_create
    from cases.models import SmearImage
    from cases.services import Upload, case_create
    from inference.models import Prediction
    from inference.services.registry import model_version_deploy, model_version_import
    from leukweb.celery import app as celery_app
    from leukweb.health import worker_roundtrip

    var = Path(settings.VAR_DIR)
    verify = [png(i, 96) for i in range(8)]
    v1 = model_version_import(
        source=package("cml1", 64, var / "artifacts", version="1", seed=1, verify=verify)
    )
    v2 = model_version_import(
        source=package("cml1", 64, var / "artifacts", version="2", seed=2, verify=verify)
    )
    model_version_deploy(model_version=v1, actor=None, reason="benchmark")
    user, _ = user_create(username="bench", role="clinician", teams=["Bench"])
    team = user.teams.get()

    log = (var / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leukweb", "worker", "--pool=solo",
         "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-n", "bench@%h", "--without-mingle",
         "--without-gossip", "--loglevel=INFO"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    counter = iter(range(1_000_000))

    def upload():
        n = next(counter)
        started = time.time()
        case = case_create(
            user=user,
            new_patient={"team": team, "identifier": f"B-{n}"},
            uploads=[Upload(io.BytesIO(png(n, 128)), f"{n}.png")],
            submit=True,
        )
        return case, started

    def stored(case, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prediction = Prediction.objects.filter(image__case=case).first()
            if prediction is not None:
                return prediction
            time.sleep(0.005)
        raise RuntimeError(f"no prediction for {case} after {timeout}s")

    try:
        celery_app.control.purge()
        worker_roundtrip(timeout=120)
        for _ in range(3):  # warm: TensorFlow imported, model loaded and traced
            stored(upload()[0])
        latencies = []
        for _ in range(uploads):
            case, started = upload()
            latencies.append(stored(case).created.timestamp() - started)

        # Idle swap: deploy, upload at once; the worker loads and warms v2 inside that task.
        deployed_at = time.time()
        model_version_deploy(model_version=v2, actor=None, reason="benchmark swap")
        case, _ = upload()
        first = stored(case)
        idle_delay = first.created.timestamp() - deployed_at

        # Swap under load: a stream of uploads while v2 -> v1 -> v2 are deployed.
        cases = []
        for i in range(swap_uploads):
            cases.append(upload()[0])
            if i == swap_uploads // 3:
                model_version_deploy(model_version=v1, actor=None, reason="benchmark rollback")
            if i == 2 * swap_uploads // 3:
                loaded_at = time.time()
                model_version_deploy(model_version=v2, actor=None, reason="benchmark redeploy")
        for case in cases:
            stored(case)
        after = Prediction.objects.filter(
            model_version=v2, created__gte=datetime.fromtimestamp(loaded_at, UTC)
        ).order_by("created")
        load_delay = after[0].created.timestamp() - loaded_at if after else None
        failed_images = SmearImage.objects.filter(status=SmearImage.Status.FAILED).count()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    worker_log = (var / "worker.log").read_text()
    failed_tasks = sum(
        1
        for line in worker_log.splitlines()
        if "inference.analyse_case[" in line and ("raised" in line or "retry" in line)
    )
    result = {
        "broker": settings.CELERY_BROKER_URL.split("://", 1)[0],
        "uploads": uploads,
        "p50": statistics.median(latencies),
        "p95": float(np.percentile(latencies, 95)),
        "first_after_idle_deploy": idle_delay,
        "first_after_deploy_under_load": load_delay,
        "swap_uploads": swap_uploads,
        "swap_versions_used": sorted(
            {str(p.model_version) for p in Prediction.objects.filter(image__case__in=cases)}
        ),
        "failed_tasks": failed_tasks,
        "failed_images": failed_images,
    }
    out.write_text(json.dumps(result))


# --- report ---------------------------------------------------------------------------

#: The issue's targets for this 2-core machine (#13), checked in the report.
TARGETS = {
    "worker_vs_best_fp32": 0.85,
    "mobilenet_worker_vs_tf_compiled": 1.7,
    "int8_vs_fp32": 2.0,
    "worker_rss_mb": 350,
    "worker_start_to_first_prediction_s": 5.0,
}


def figures(throughputs: list[dict], start: dict, load: tuple[float, float, float]) -> dict:
    """docs/benchmarks.json: the smear-JPEG rows per model, the worker's start and memory."""
    models = {}
    for t in throughputs:
        if t["uploads"] != "smear JPEGs":
            continue
        models[t["arch"]] = {
            "naive_img_s": round(t["naive"], 1),
            "tf_compiled_img_s": round(t["tf_compiled"], 1),
            "tf_compiled_with_guard_img_s": round(t["tf_compiled_guard"], 1),
            "worker_ort_vs_tf_compiled_with_guard": round(
                t["worker_ort_fp32"] / t["tf_compiled_guard"], 3
            ),
            "bare_ort_fp32_img_s": round(t["bare_ort_fp32"], 1),
            "bare_ort_fp32_batch16_img_s": round(t["bare_ort_fp32_batch16"], 1),
            "worker_ort_fp32_img_s": round(t["worker_ort_fp32"], 1),
            "run_batch": t["run_batch"],
            "worker_fp32_img_s": round(t["worker_fp32"], 1),
            "worker_int8_img_s": round(t["worker_int8"], 1),
            "worker_vs_best_fp32": round(t["worker_fp32"] / best_bare(t), 3),
            "worker_vs_worker_ort": round(t["worker_fp32"] / t["worker_ort_fp32"], 3),
            "worker_vs_tf_compiled": round(t["worker_fp32"] / t["tf_compiled"], 3),
            "int8_vs_fp32": round(t["worker_int8"] / t["worker_fp32"], 3),
            "heatmaps_img_s": round(t["heatmaps"], 1),
            **({"one_thread_ms": _rounded(t["one_thread_ms"])} if "one_thread_ms" in t else {}),
        }
    return {
        "measured": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average_at_start": list(load),
        "images": "cases of 16 smear JPEGs (BCCD, 640x480), 224 px models, random weights",
        "models": models,
        "worker_rss_mb": round(start["rss_mb"], 1) if "rss_mb" in start else None,
        "worker_start_to_first_prediction_s": round(start["seconds"], 2)
        if "seconds" in start
        else None,
        "worker_start_cpu_s": round(start["cpu_seconds"], 2) if "cpu_seconds" in start else None,
        "worker_model": "resnet50",
        "targets": TARGETS,
    }


def _rounded(ms: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 2) for k, v in ms.items()}


def best_bare(t: dict) -> float:
    """Bare ONNX Runtime's images/s at its better batch size: what #13 compares against."""
    return max(t["bare_ort_fp32"], t["bare_ort_fp32_batch16"])


def _met(value: float | None, target: float, *, below: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value < target if below else value >= target
    return "met" if ok else "**missed**"


def verdicts(throughputs: list[dict], start: dict, load: tuple[float, float, float]) -> str:
    """The targets in a few lines, for a run that writes no report (``--quick``, a part)."""
    lines = [f"targets (#13), load average {load[0]:.1f} at the start:"]
    for t in throughputs:
        if t["uploads"] != "smear JPEGs":
            continue
        vs_bare = t["worker_fp32"] / best_bare(t)
        int8 = t["worker_int8"] / t["worker_fp32"]
        line = (
            f"  {t['arch']}: worker / bare ORT {vs_bare:.0%} "
            f"({_met(vs_bare, TARGETS['worker_vs_best_fp32'])}; worker / its ORT "
            f"{t['worker_fp32'] / t['worker_ort_fp32']:.0%}, decode share {t['decode']:.0%}), "
            f"int8 / fp32 {int8:.2f}x ({_met(int8, TARGETS['int8_vs_fp32'])})"
        )
        if t["arch"] == "mobilenet":
            vs_tf = t["worker_fp32"] / t["tf_compiled"]
            target = TARGETS["mobilenet_worker_vs_tf_compiled"]
            line += f", worker / TF compiled {vs_tf:.2f}x ({_met(vs_tf, target)})"
        if "one_thread_ms" in t:
            cost = t["one_thread_ms"]
            line += (
                f"; one thread, ms an image: graph {cost['graph']:.2f}, guard "
                f"{cost['guard']:.2f}, decode {cost['decode']:.2f}, int8 with the guard "
                f"{cost['int8']:.2f}; int8 / fp32 with every core busy, decoding included, "
                f"at most {every_core_int8_bound(cost):.2f}x"
            )
        lines.append(line)
    if "seconds" in start:
        seconds, target = start["seconds"], TARGETS["worker_start_to_first_prediction_s"]
        lines.append(
            f"  worker start to first prediction {seconds:.2f} s "
            f"({_met(seconds, target, below=True)}; {start['cpu_seconds']:.2f} s CPU), "
            f"{start['rss_mb']:.0f} MB resident "
            f"({_met(start['rss_mb'], TARGETS['worker_rss_mb'], below=True)})"
        )
    return "\n".join(lines)


def render(throughputs: list[dict], start: dict, workers: list[dict], seconds: float, load) -> str:
    cpu = os.cpu_count()
    lines = [
        "## Inference",
        "",
        f"Written by `python -m benchmarks.inference` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f" ({platform.machine()}, {cpu} CPU cores, Python {platform.python_version()}, "
        f"TensorFlow {_tf_version()}, ONNX Runtime {_ort_version()}) in {seconds:.0f} s, "
        f"load average {load[0]:.1f} at the start (the machine is shared). Rerun it to "
        "refresh this section and docs/benchmarks.json; expect 15-25 % noise between runs "
        "on a shared machine: the ratios, measured in one run, are what to compare.",
        "",
        "### Throughput, images/s (224 px, untrained weights, cases of 16 uploads)",
        "",
        "Naive: decode, resize and `model.predict` once per image. TF compiled: a "
        "`tf.function` call on a ready batch of 16. Bare ORT: ONNX Runtime as it comes (a "
        "session on the artifact's fp32 graph, every graph optimisation, its default "
        "threading: each call split over every core) run call after call on the same ready "
        "uint8 images in the worker's batch size (`Predictor.run_batch`), and on one batch "
        "of 16; worker / bare ORT is against the better of the two. Worker's ORT: the "
        "worker's own one-thread session on the same ready pixels, its runs side by side "
        "on a thread per core as the worker runs them (`Predictor.scored`, the guard's "
        "scoring included), so that worker / its ORT is what the rest of the path costs. "
        "Worker fp32 / int8: `Predictor` (decode and resize on a thread per core, "
        "ONNX Runtime runs side by side on a thread per core, the out-of-scope guard "
        "(fitted on 32 other smears), calibration) on the fp32 graph "
        "and on an int8 variant (static QDQ, calibrated on the same 32 smears). Grad-CAM: "
        "what a heatmap worker makes after the predictions are stored. Each timed call "
        f"starts after {SETTLE_S * 1000:.0f} ms idle, so that no path pays for the threads "
        "the previous one left spinning.",
        "",
        "| model | uploads | naive | TF compiled | bare ORT fp32 | ... batch 16 "
        "| worker's ORT | worker fp32 | worker int8 | worker / bare ORT | worker / its ORT "
        "| worker / TF compiled | int8 / fp32 | decode share | Grad-CAM |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in throughputs:
        lines.append(
            f"| {t['arch']} | {t['uploads']} | {t['naive']:.1f} | {t['tf_compiled']:.1f} "
            f"| {t['bare_ort_fp32']:.1f} | {t['bare_ort_fp32_batch16']:.1f} "
            f"| {t['worker_ort_fp32']:.1f} | {t['worker_fp32']:.1f} | {t['worker_int8']:.1f} "
            f"| {t['worker_fp32'] / best_bare(t):.0%} "
            f"| {t['worker_fp32'] / t['worker_ort_fp32']:.0%} "
            f"| {t['worker_fp32'] / t['tf_compiled']:.2f}x "
            f"| {t['worker_int8'] / t['worker_fp32']:.2f}x | {t['decode']:.0%} "
            f"| {t['heatmaps']:.1f} |"
        )
    smears = {t["arch"]: t for t in throughputs if t["uploads"] == "smear JPEGs"}
    mobilenet = smears.get("mobilenet")
    lines += [
        "",
        "Targets (#13, smear JPEGs): worker fp32 at least 85 % of bare ORT fp32 for every "
        "model ("
        + ", ".join(
            f"{a} {_met(t['worker_fp32'] / best_bare(t), TARGETS['worker_vs_best_fp32'])}"
            for a, t in smears.items()
        )
        + "); MobileNet's worker path at least 1.7x the TF compiled batch ("
        + (
            _met(
                mobilenet["worker_fp32"] / mobilenet["tf_compiled"],
                TARGETS["mobilenet_worker_vs_tf_compiled"],
            )
            if mobilenet
            else "not measured"
        )
        + "); int8 at least 2x fp32 ("
        + ", ".join(
            f"{a} {_met(t['worker_int8'] / t['worker_fp32'], TARGETS['int8_vs_fp32'])}"
            for a, t in smears.items()
        )
        + "). The int8 variants here are for speed: on random weights there is no accuracy "
        "to keep. A packaged int8 variant is refused unless its test accuracy stays within "
        "0.5 points of fp32's and its labels agree on 99 % of the test images "
        "(`training/quantize.py`). The decode share is the fp32 worker path's time spent "
        "decoding and resizing uploads, which the bare calls do not do. The 256 px "
        "random-noise PNGs are the worst case to decode.",
        "",
        *cost_lines(smears),
        "### An analysis worker: start to first prediction, and memory",
        "",
    ]
    if "error" in start:
        lines.append(f"Not run: {' '.join(start['error'])}")
    else:
        lines += [
            f"A solo-pool analysis worker ({start['broker']} broker, SQLite) with "
            f"{start['architecture']} deployed, started with a one-image case already "
            f"queued: its first prediction was stored {start['seconds']:.2f} s after the "
            f"start (target under 5 s: {_met(start['seconds'], 5.0, below=True)}), having "
            f"used {start['cpu_seconds']:.2f} s of CPU (the start runs mostly one thread at a "
            "time, so that is close to its wall time on an idle machine); after a "
            f"second case of {CASE_SIZE} smears it held {start['rss_mb']:.0f} MB resident "
            "(target under 350 MB: "
            f"{_met(start['rss_mb'], 350, below=True)}); TensorFlow loaded in it: "
            f"{'yes' if start['tensorflow_loaded'] else 'no'}. The start includes Python, "
            "Django and Celery, fetching the artifact from the models storage into the "
            "worker's cache, loading and self-testing the graph, and the case itself.",
        ]
    lines += [
        "",
        "### Upload to stored prediction, single-image cases, warm solo worker",
        "",
        "The demo model's architecture (CML-1, 64 px). Measured from the call of the upload "
        "service (validation, thumbnail, commit, queueing) to the prediction row's timestamp; "
        "SQLite database.",
        "",
        "| broker | uploads | p50 | p95 | first prediction after a deploy (idle) "
        "| ... under load | failed tasks during swaps | failed images |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in workers:
        if "error" in w:
            lines.append(f"| {w['broker']} | not run: {' '.join(w['error'])} |||||||")
            continue
        under_load = w["first_after_deploy_under_load"]
        lines.append(
            f"| {w['broker']} | {w['uploads']} | {w['p50'] * 1000:.0f} ms "
            f"| {w['p95'] * 1000:.0f} ms | {w['first_after_idle_deploy']:.2f} s "
            f"| {'-' if under_load is None else f'{under_load:.2f} s'} "
            f"| {w['failed_tasks']} of {w['swap_uploads']} | {w['failed_images']} |"
        )
    lines += [
        "",
        "Swap under load: a stream of uploads while the deployed version changes twice "
        '(rollback, redeploy); every task must succeed. "Under load" includes the queue in '
        "front of the new version's first task. An idle worker polls the filesystem broker's "
        "folder every 0.1 s, which adds up to that to its latency; Redis delivers at once.",
        "",
        "Targets: p50 under 1 s on Redis for the demo model; zero failed tasks during a swap.",
        "",
    ]
    return "\n".join(lines)


def _costed(smears: dict[str, dict]) -> list[tuple[str, dict, dict]]:
    """The models whose run measured the costs an image has on each part of the path."""
    return [(arch, t, t["one_thread_ms"]) for arch, t in smears.items() if "one_thread_ms" in t]


def cost_lines(smears: dict[str, dict]) -> list[str]:
    """The table of what an image costs each part of the worker's path, and the ceilings
    those costs put on the worker against the TF compiled batch."""
    cores = os.cpu_count() or 1
    rows = [
        "### Where a worker's CPU time goes (smear JPEGs, ms an image on one thread)",
        "",
        "Graph: the model's ONNX graph alone, converted without the guard's outputs. Guard: "
        "what the guard's taps and pixel statistics add to the graph the worker runs. "
        "Decode: decoding and resizing one upload. Ceiling: the worker's images/s against "
        f"the TF compiled batch if its {cores} cores did nothing but these parts, side by "
        "side and without a pause (cores x 1000 / ms), first without the guard and "
        "decoding, then with them: what no scheduling in the worker can exceed. TF compiled "
        "with the guard: the same `tf.function` batch call on the guard's graph (features "
        "and probabilities), the work the worker's ORT does on ready pixels. int8: the "
        "int8 graph with the guard, as the worker runs it; int8 / fp32 on one thread: the "
        "graphs with the guard, then with decoding too (what the worker's int8 / fp32 "
        "would be on these costs alone: decoding is the same for both).",
        "",
        "| model | graph | guard | decode | ceiling / TF compiled: graph alone "
        "| ... with guard and decode | worker / TF compiled "
        "| TF compiled with the guard, images/s | worker's ORT / it "
        "| int8 | int8 / fp32: graphs | ... with decoding |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, t, cost in _costed(smears):
        fp32 = cost["graph"] + cost["guard"]
        alone = cores * 1000 / cost["graph"] / t["tf_compiled"]
        whole = cores * 1000 / (fp32 + cost["decode"]) / t["tf_compiled"]
        rows.append(
            f"| {arch} | {cost['graph']:.2f} | {cost['guard']:.2f} | {cost['decode']:.2f} "
            f"| {alone:.2f}x | {whole:.2f}x | {t['worker_fp32'] / t['tf_compiled']:.2f}x "
            f"| {t['tf_compiled_guard']:.1f} "
            f"| {t['worker_ort_fp32'] / t['tf_compiled_guard']:.2f}x "
            f"| {cost['int8']:.2f} | {fp32 / cost['int8']:.2f}x "
            f"| {(fp32 + cost['decode']) / (cost['int8'] + cost['decode']):.2f}x |"
        )
    return [*rows, "", *every_core_lines(smears)]


def every_core_int8_bound(cost: dict) -> float:
    """The worker's int8 / fp32 if its busy cores did nothing but the graphs with the
    guard and the decoding, at what each costs with every core busy at once."""
    busy = cost["every_core"]
    return (busy["fp32"] + busy["decode"]) / (busy["int8"] + busy["decode"])


def every_core_lines(smears: dict[str, dict]) -> list[str]:
    """What the parts cost with every core busy at once, beside one thread, and the bound
    those costs put on the worker's int8 / fp32."""
    cores = os.cpu_count() or 1
    rows = [
        f"### int8 and fp32 with every core busy (smear JPEGs, ms an image on each of {cores} "
        "cores)",
        "",
        "The fp32 and int8 graphs with the guard, and decoding, each run by every core at "
        "once on its own images, as the worker's busy threads run them, beside the same on "
        "one thread. Bound: int8 / fp32 if the worker's cores did nothing but these parts "
        "at these costs, decoding included (it is the same for both): what no scheduling "
        "in the worker can exceed on this machine.",
        "",
        "| model | fp32: one thread | every core | int8: one thread | every core "
        "| decode: one thread | every core | int8 / fp32: bound | worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, t, cost in _costed(smears):
        busy = cost["every_core"]
        rows.append(
            f"| {arch} | {cost['graph'] + cost['guard']:.2f} | {busy['fp32']:.2f} "
            f"| {cost['int8']:.2f} | {busy['int8']:.2f} | {cost['decode']:.2f} "
            f"| {busy['decode']:.2f} | {every_core_int8_bound(cost):.2f}x "
            f"| {t['worker_int8'] / t['worker_fp32']:.2f}x |"
        )
    return [*rows, ""]


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


PARTS = ("throughput", "start", "latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__)
    parser.add_argument(
        "--out", type=Path, help="default docs/benchmarks.md, after a full run only"
    )
    parser.add_argument(
        "--json", type=Path, help="default docs/benchmarks.json, after a full run only"
    )
    parser.add_argument(
        "--smears",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "bccd-smears" / "images",
        help="a folder of real smear JPEGs for the realistic upload row",
    )
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), metavar="MODEL"
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="throughput (part 1), start (part 2, needs resnet50 among --models), "
        "latency (parts 3 and 4)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions (3 cases, 8 naive images, 10 uploads and swap uploads): "
        "a few minutes, for a first look; its figures are noisier",
    )
    parser.add_argument("--naive-images", type=int)
    parser.add_argument("--cases", type=int, help=f"cases of {CASE_SIZE} per path")
    parser.add_argument("--uploads", type=int)
    parser.add_argument("--swap-uploads", type=int)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    sub = parser.add_subparsers(dest="child")
    child = sub.add_parser("_through_worker")
    child.add_argument("--uploads", type=int, required=True)
    child.add_argument("--swap-uploads", type=int, required=True)
    child.add_argument("--out", type=Path, required=True)
    start_child = sub.add_parser("_worker_start")
    start_child.add_argument("--artifact", type=Path, required=True)
    start_child.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.child == "_through_worker":
        _through_worker_child(args.uploads, args.swap_uploads, args.out)
        return 0
    if args.child == "_worker_start":
        _worker_start_child(args.artifact, args.out)
        return 0

    # numpy's BLAS on one thread, as in an analysis worker (leukweb/celery.py): its own
    # spinning pool would otherwise slow the ONNX Runtime calls after the guard's products.
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=1, user_api="blas")
    repeats = QUICK if args.quick else FULL
    for name, value in repeats.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    # Only a full run replaces the published figures; any other writes where it is told.
    full = not args.quick and set(args.models) == set(MODELS) and set(args.parts) == set(PARTS)
    if full:
        args.out = args.out or ROOT / "docs" / "benchmarks.md"
        args.json = args.json or ROOT / "docs" / "benchmarks.json"

    started = time.monotonic()
    load = os.getloadavg()
    uploads = {
        "smear JPEGs": smear_jpegs(args.smears),
        "noise PNGs": [png(i, 256) for i in range(CASE_SIZE)],
    }
    calibration = smear_jpegs(args.smears, count=32, skip=CASE_SIZE)
    throughputs: list[dict] = []
    start: dict = {"error": ["not measured (--parts)"]}
    with tempfile.TemporaryDirectory(prefix="leukweb-bench-models-") as tmp:
        if "throughput" in args.parts:
            for arch in args.models:
                rows = throughput(
                    arch,
                    uploads,
                    calibration,
                    naive_images=args.naive_images,
                    cases=args.cases,
                    out=Path(tmp) / arch,
                )
                throughputs += rows
                print(json.dumps(rows), flush=True)
        if "start" in args.parts:
            if "resnet50" not in args.models:
                start = {"error": ["ResNet-50 was not among --models"]}
            else:
                resnet = next(Path(tmp, "resnet50").glob("bench-resnet50-*"), None)
                if resnet is None:  # part 1 did not package it
                    resnet = package(
                        "resnet50",
                        224,
                        Path(tmp) / "resnet50",
                        verify=uploads["smear JPEGs"],
                        guard_images=calibration,
                    )
                start = worker_start(resnet, uploads["smear JPEGs"], args.redis_url)
            print(json.dumps(start), flush=True)
    workers = []
    if "latency" in args.parts:
        for broker in ("embedded", "redis"):
            workers.append(
                through_worker(
                    broker,
                    uploads=args.uploads,
                    swap_uploads=args.swap_uploads,
                    redis_url=args.redis_url,
                )
            )
            print(json.dumps(workers[-1]), flush=True)
    elapsed = time.monotonic() - started
    print(verdicts(throughputs, start, load), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        section_write(args.out, "inference", render(throughputs, start, workers, elapsed, load))
        print(f"wrote {args.out}")
    if args.json is not None:
        json_top_write(args.json, figures(throughputs, start, load))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
