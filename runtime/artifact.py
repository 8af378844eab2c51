"""The packaged model artifact: write it, and load it back only if it proves intact.

Layout of ``<name>-<version>/``: ``model.keras`` (0-255 RGB in, probabilities out),
``manifest.json`` (a :class:`Manifest`), ``ood.npz`` (the out-of-scope guard, format 2),
``model.onnx`` (the same model as an ONNX graph, uint8 RGB in, format 3) with
``verification.npz`` (real preprocessed images and the Keras model's answers for them,
which the graph must reproduce), optionally ``model.int8.onnx`` (a quantised variant,
refused unless it keeps the accuracy), ``report.json``, ``report.html`` and the SVG
figures. ``load_packaged`` loads the Keras model (training, Grad-CAM);
``runtime.predictor`` serves the ONNX graph. Neither trusts anything the manifest, the
hashes and a test inference do not confirm. Training writes with ``write_artifact``;
both sides read with the same code, so the format has one definition.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from runtime.guard import OOD_FILE, FeatureSpec, Guard, guard_load

#: Version of the packaged-artifact layout (manifest.json ``format_version``).
FORMAT_VERSION = 3  # 2: adds the out-of-scope guard (ood.npz); 3: the ONNX graph
#: Layouts this code reads: 1 has no out-of-scope guard, 2 adds ``ood``, 3 adds ``onnx``
#: (and may add ``int8``). Import gives a format 1 or 2 artifact its ONNX graph.
READABLE_FORMATS = (1, 2, 3)

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
VERIFICATION_FILE = "verification.npz"
#: How many preprocessed images an artifact's verification batch holds at most.
VERIFICATION_IMAGES = 32
VARIANTS = ("fp32", "int8")
REQUIRED_METRICS = ("accuracy", "macro_f1", "ece_before", "ece_after")


class ArtifactError(Exception):
    """A packaged model is missing, malformed, tampered with or does not behave as declared."""


@dataclass(frozen=True)
class Manifest:
    """What the registry needs to know about a model, as stored in manifest.json."""

    name: str
    version: str
    architecture: str
    classes: list[str]
    input_size: int
    dataset_fingerprint: str
    split_sizes: dict[str, int]
    metrics: dict[str, Any]
    temperature: float
    confidence_threshold: float
    heatmap_layer: str
    created: str
    content_hash: str
    synthetic: bool
    format_version: int = FORMAT_VERSION
    #: {method, layer, threshold, quantile, shrinkage, file, sha256}; None in format 1.
    ood: dict[str, Any] | None = None
    #: {file, sha256, opset, converter, verification: {file, sha256, images, source,
    #: max_abs_diff, ...}}; None before format 3.
    onnx: dict[str, Any] | None = None
    #: The quantised variant: {status: accepted|refused, reason, accuracy, fp32_accuracy,
    #: agreement, ...; file and sha256 when accepted}; None when none was made.
    int8: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Manifest:
        """Validate types and required keys; unknown keys are kept under ``extra``."""
        if not isinstance(raw, dict):
            raise ArtifactError("manifest must be a JSON object")
        known = {f.name for f in fields(cls)}
        optional = {"extra", "format_version", "ood", "onnx", "int8"}
        missing = sorted(k for k in known - optional if k not in raw)
        if missing:
            raise ArtifactError(f"manifest is missing keys: {', '.join(missing)}")
        fmt = raw.get("format_version", 1)
        if fmt not in READABLE_FORMATS:
            raise ArtifactError(
                f"manifest format_version {fmt!r} is not supported (this code reads "
                f"{', '.join(map(str, READABLE_FORMATS))})"
            )
        ood = raw.get("ood")
        if ood is not None and (
            not isinstance(ood, dict)
            or not {"method", "layer", "threshold", "file", "sha256"} <= ood.keys()
        ):
            raise ArtifactError("manifest 'ood' must name method, layer, threshold, file, sha256")
        onnx = raw.get("onnx")
        if onnx is not None and (
            not isinstance(onnx, dict)
            or not {"file", "sha256", "verification"} <= onnx.keys()
            or not isinstance(onnx["verification"], dict)
            or not {"file", "sha256", "source"} <= onnx["verification"].keys()
        ):
            raise ArtifactError(
                "manifest 'onnx' must name file, sha256 and a verification batch (file, "
                "sha256, source)"
            )
        int8 = raw.get("int8")
        if int8 is not None and (
            not isinstance(int8, dict)
            or int8.get("status") not in ("accepted", "refused")
            or (int8["status"] == "accepted" and not {"file", "sha256"} <= int8.keys())
        ):
            raise ArtifactError(
                "manifest 'int8' must say accepted (with file and sha256) or refused"
            )
        checks: dict[str, type | tuple[type, ...]] = {
            "name": str,
            "version": str,
            "architecture": str,
            "classes": list,
            "input_size": int,
            "dataset_fingerprint": str,
            "split_sizes": dict,
            "metrics": dict,
            "temperature": (int, float),
            "confidence_threshold": (int, float),
            "heatmap_layer": str,
            "created": str,
            "content_hash": str,
            "synthetic": bool,
        }
        for key, kind in checks.items():
            if not isinstance(raw[key], kind) or (kind is int and isinstance(raw[key], bool)):
                raise ArtifactError(f"manifest {key!r} has the wrong type: {raw[key]!r}")
        classes = raw["classes"]
        if len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
            raise ArtifactError("manifest 'classes' must list at least two non-empty names")
        if len(set(classes)) != len(classes):
            raise ArtifactError("manifest 'classes' has duplicates")
        if not raw["content_hash"].startswith("sha256:"):
            raise ArtifactError("manifest 'content_hash' must look like 'sha256:<hex>'")
        if raw["temperature"] <= 0 or not 0 <= raw["confidence_threshold"] <= 1:
            raise ArtifactError("manifest temperature must be > 0 and threshold within [0, 1]")
        absent = [m for m in REQUIRED_METRICS if m not in raw["metrics"]]
        if absent:
            raise ArtifactError(f"manifest metrics lack {', '.join(absent)}")
        extra = {k: v for k, v in raw.items() if k not in known}
        extra.update(raw.get("extra") or {})
        values = {k: raw[k] for k in known if k in raw and k != "extra"}
        values["format_version"] = fmt
        values["temperature"] = float(values["temperature"])
        values["confidence_threshold"] = float(values["confidence_threshold"])
        return cls(**values, extra=extra)


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks: the content hash manifests carry."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def utc_now() -> str:
    """The current UTC time as manifests and reports write it (``2026-01-31T12:00:00Z``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class VerificationBatch:
    """Preprocessed images (uint8, N x size x size x 3) that the ONNX graph must answer
    exactly as the Keras model does, and a sentence saying where they come from."""

    images: np.ndarray
    source: str


def write_artifact(
    model,
    out_dir: Path,
    *,
    manifest_fields: dict[str, Any],
    verification: VerificationBatch,
    report_files: list[Path] | tuple[Path, ...] = (),
    guard: Guard | None = None,
    finish: Callable[[Path, dict[str, Any]], None] | None = None,
) -> tuple[Path, Manifest]:
    """Save ``model``, its verified ONNX graph and its manifest (plus report files) into
    ``out_dir/<name>-<version>/``.

    ``guard`` is saved as ``ood.npz``; its own sha256 goes into the manifest's ``ood``
    entry, so tampering with it is caught too. ``finish`` may add files and manifest
    entries (the int8 variant) before the folder appears.
    """
    folder = Path(out_dir) / f"{manifest_fields['name']}-{manifest_fields['version']}"
    if folder.exists():
        raise ArtifactError(f"{folder} already exists: pick another --version")
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _inference_copy(model).save(tmp / MODEL_FILE)
    for f in report_files:
        if Path(f).exists():
            shutil.copy2(f, tmp / Path(f).name)
    values = dict(manifest_fields)
    values.setdefault("created", utc_now())
    values["content_hash"] = sha256_file(tmp / MODEL_FILE)
    values["format_version"] = FORMAT_VERSION
    if guard is not None:
        values["ood"] = guard.manifest_entry(sha256_file(guard.save(tmp / OOD_FILE)))
    values["onnx"] = onnx_attach(
        tmp,
        model,
        size=int(values["input_size"]),
        features=guard.spec if guard is not None else None,
        batch=verification,
    )
    if finish is not None:
        finish(tmp, values)
    manifest = Manifest.from_dict(values)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    tmp.rename(folder)  # appear complete or not at all
    return folder, manifest


def onnx_attach(
    folder: Path, model, *, size: int, features: FeatureSpec | None, batch: VerificationBatch
) -> dict[str, Any]:
    """Write ``model.onnx`` and the verification batch into ``folder``, after proving that
    the graph answers as ``model`` does; returns the manifest's ``onnx`` entry.

    Needs TensorFlow and tf2onnx (packaging, or import of an artifact without a graph).
    """
    import tf2onnx

    from runtime.export import OPSET, keras_outputs, onnx_convert, onnx_session, onnx_verify

    images = np.asarray(batch.images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ArtifactError(
            f"the verification batch must be uint8 images of {size}x{size} RGB, got "
            f"{images.dtype} {images.shape}"
        )
    if not len(images):
        raise ArtifactError("the verification batch holds no image")
    images = np.ascontiguousarray(images[:VERIFICATION_IMAGES])
    expected = keras_outputs(model, images, features)
    (folder / ONNX_FILE).write_bytes(onnx_convert(model, size, features))
    with (folder / VERIFICATION_FILE).open("wb") as fh:  # a handle: savez adds no suffix
        if expected.features is None:
            np.savez_compressed(fh, images=images, probabilities=expected.probabilities)
        else:
            np.savez_compressed(
                fh, images=images, probabilities=expected.probabilities, features=expected.features
            )
    agreement = onnx_verify(onnx_session(folder / ONNX_FILE), images, expected)
    return {
        "file": ONNX_FILE,
        "sha256": sha256_file(folder / ONNX_FILE),
        "opset": OPSET,
        "converter": f"tf2onnx {tf2onnx.__version__}",
        "verification": {
            "file": VERIFICATION_FILE,
            "sha256": sha256_file(folder / VERIFICATION_FILE),
            "source": batch.source,
            **agreement,
        },
    }


def artifact_onnx_add(source: Path, dest: Path, batch: VerificationBatch) -> tuple[Path, Manifest]:
    """A copy of an artifact that has no ONNX graph (formats 1 and 2), with one: converted
    from its Keras model and verified on ``batch``, the manifest moved to format 3.

    The Keras file, and so the content hash, are unchanged.
    """
    model, manifest = load_packaged(source)
    guard = load_guard(source, manifest)
    if manifest.onnx is not None:
        raise ArtifactError(f"{source} already carries an ONNX graph")
    if Path(dest).exists():
        raise ArtifactError(f"{dest} already exists")
    shutil.copytree(source, dest)
    values = manifest.to_dict()
    values["format_version"] = FORMAT_VERSION
    values["onnx"] = onnx_attach(
        Path(dest),
        model,
        size=manifest.input_size,
        features=None if guard is None else guard.spec,
        batch=batch,
    )
    updated = Manifest.from_dict(values)
    (Path(dest) / MANIFEST_FILE).write_text(
        json.dumps(updated.to_dict(), indent=1), encoding="utf-8"
    )
    return Path(dest), updated


def _checked(folder: Path, entry: dict[str, Any], what: str) -> Path:
    path = Path(folder) / entry["file"]
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise ArtifactError(
            f"{path}: {what} missing or its hash does not match the manifest's; the file "
            "was changed or corrupted"
        )
    return path


def onnx_file(folder: Path, manifest: Manifest, variant: str = "fp32") -> Path:
    """The verified path of the artifact's ONNX graph in ``variant`` (fp32 or int8)."""
    if variant not in VARIANTS:
        raise ArtifactError(f"unknown model variant {variant!r} (known: {', '.join(VARIANTS)})")
    if manifest.onnx is None:
        raise ArtifactError(
            f"{manifest.name} {manifest.version} has no ONNX graph (packaged before format "
            "3): `manage.py export_onnx` gives a registered version one, `manage.py "
            "import_model` an artifact folder, converted and verified"
        )
    if variant == "fp32":
        return _checked(folder, manifest.onnx, "the ONNX graph")
    if manifest.int8 is None or manifest.int8.get("status") != "accepted":
        raise ArtifactError(f"{manifest.name} {manifest.version} has no accepted int8 variant")
    return _checked(folder, manifest.int8, "the int8 ONNX graph")


def verification_load(folder: Path, manifest: Manifest):
    """The verification batch: (uint8 images, ``runtime.export.KerasOutputs``)."""
    from runtime.export import KerasOutputs

    if manifest.onnx is None:
        raise ArtifactError(f"{manifest.name} {manifest.version} has no verification batch")
    path = _checked(folder, manifest.onnx["verification"], "the verification batch")
    try:
        with np.load(path, allow_pickle=False) as z:
            features = z["features"] if "features" in z.files else None
            return z["images"], KerasOutputs(z["probabilities"], features)
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: the verification batch cannot be read ({exc})") from exc


def _inference_copy(model):
    """The model without optimizer state (a third of the file size with Adam), same weights."""
    if getattr(model, "optimizer", None) is None:
        return model
    import keras

    # clone_model keeps the compiled state in Keras 3.15; a model rebuilt from its config
    # does not, and keeps every layer name (the manifest's heatmap layer among them).
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def read_manifest(path: Path) -> Manifest:
    """The validated manifest of an artifact folder; needs neither the model nor TensorFlow."""
    folder = Path(path)
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST_FILE}")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not valid JSON ({exc})") from exc
    return Manifest.from_dict(raw)


def load_packaged(path: str | Path, *, check_inference: bool = True):
    """Load ``(keras.Model, Manifest)`` from an artifact folder, verifying it first.

    Raises :class:`ArtifactError` for a missing folder or file, bad JSON, a content-hash
    mismatch, a model Keras cannot load, or one whose input/output shapes disagree with
    the manifest. With ``check_inference`` one blank image must give a probability row.
    """
    folder = Path(path)
    if folder.is_file() and folder.name in (MODEL_FILE, MANIFEST_FILE):
        folder = folder.parent
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such artifact folder")
    manifest = read_manifest(folder)
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{folder}: no {MODEL_FILE}")
    actual = sha256_file(model_path)
    if actual != manifest.content_hash:
        raise ArtifactError(
            f"{model_path}: content hash {actual} does not match the manifest's "
            f"{manifest.content_hash}; the file was changed or corrupted"
        )
    if manifest.ood is not None:
        ood_path = folder / manifest.ood["file"]
        if not ood_path.is_file() or sha256_file(ood_path) != manifest.ood["sha256"]:
            raise ArtifactError(
                f"{ood_path}: out-of-scope guard missing or its hash does not match the "
                "manifest's; the file was changed or corrupted"
            )
    import keras  # late: reading a manifest should not need TensorFlow

    import runtime.layers  # noqa: F401  registers the stain-normalisation layers for loading

    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a broken file
        raise ArtifactError(
            f"{model_path}: Keras cannot load it ({type(exc).__name__}: {exc})"
        ) from exc
    out_shape = tuple(model.output.shape)
    in_shape = tuple(model.input.shape)
    if out_shape[-1] != len(manifest.classes):
        raise ArtifactError(
            f"{model_path}: outputs {out_shape[-1]} values but the manifest lists "
            f"{len(manifest.classes)} classes"
        )
    if in_shape[1:] != (manifest.input_size, manifest.input_size, 3):
        raise ArtifactError(
            f"{model_path}: expects input {in_shape[1:]}, manifest says "
            f"{manifest.input_size} px RGB"
        )
    if check_inference:
        blank = np.full((1, manifest.input_size, manifest.input_size, 3), 200, np.float32)
        probs = np.asarray(model(blank, training=False))
        if (
            probs.shape != (1, len(manifest.classes))
            or not np.isfinite(probs).all()
            or abs(float(probs.sum()) - 1.0) > 1e-3
        ):
            raise ArtifactError(f"{model_path}: a test inference did not return probabilities")
    return model, manifest


def load_guard(folder: str | Path, manifest: Manifest) -> Guard | None:
    """The artifact's out-of-scope guard, or None for a format-1 artifact that has none.

    Call after :func:`load_packaged`, which has verified the file's hash.
    """
    if manifest.ood is None:
        return None
    try:
        return guard_load(Path(folder) / manifest.ood["file"], manifest.ood["method"])
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{folder}: the out-of-scope guard cannot be read ({exc})") from exc
