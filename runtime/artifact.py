"""The packaged model artifact: write it, and load it back only if it proves intact.

Layout of ``<name>-<version>/``: ``model.keras`` (0-255 RGB in, probabilities out),
``manifest.json`` (a :class:`Manifest`), ``ood.npz`` (the out-of-scope guard, format 2),
``report.json``, ``report.html`` and the SVG figures. ``load_packaged`` is what the
inference registry calls: it trusts nothing the manifest, the content hash and one test
inference do not confirm. Training writes with ``write_artifact``; both sides read with
the same code, so the format has one definition.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from runtime.guard import METHOD, OOD_FILE, MahalanobisGuard

#: Version of the packaged-artifact layout (manifest.json ``format_version``).
FORMAT_VERSION = 2  # 2: adds the out-of-scope guard (ood.npz)
#: Layouts this code reads: 1 has no out-of-scope guard, 2 adds ``ood``.
READABLE_FORMATS = (1, 2)

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Manifest:
        """Validate types and required keys; unknown keys are kept under ``extra``."""
        if not isinstance(raw, dict):
            raise ArtifactError("manifest must be a JSON object")
        known = {f.name for f in fields(cls)}
        missing = sorted(k for k in known - {"extra", "format_version", "ood"} if k not in raw)
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


def write_artifact(
    model,
    out_dir: Path,
    *,
    manifest_fields: dict[str, Any],
    report_files: list[Path] | tuple[Path, ...] = (),
    guard: MahalanobisGuard | None = None,
) -> tuple[Path, Manifest]:
    """Save ``model`` and its manifest (plus report files) into ``out_dir/<name>-<version>/``.

    ``guard`` is saved as ``ood.npz``; its own sha256 goes into the manifest's ``ood``
    entry, so tampering with it is caught too.
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
    manifest = Manifest.from_dict(values)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    tmp.rename(folder)  # appear complete or not at all
    return folder, manifest


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


def load_guard(folder: str | Path, manifest: Manifest) -> MahalanobisGuard | None:
    """The artifact's out-of-scope guard, or None for a format-1 artifact that has none.

    Call after :func:`load_packaged`, which has verified the file's hash.
    """
    if manifest.ood is None:
        return None
    if manifest.ood["method"] != METHOD:
        raise ArtifactError(f"unknown out-of-scope method {manifest.ood['method']!r}")
    try:
        return MahalanobisGuard.load(Path(folder) / manifest.ood["file"])
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{folder}: the out-of-scope guard cannot be read ({exc})") from exc
