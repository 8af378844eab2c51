"""Model artifact files in the "models" storage, and this machine's local copies of them.

Artifacts are written and read only through Django's storage API, so workers on other
machines can share them through object storage by configuration alone. TensorFlow needs
a local folder, so each machine keeps a copy per content hash under VAR_DIR/model-cache:
a hash names exactly one set of bytes, so a copy never goes stale.

Analysis workers load the version's ONNX graph with ONNX Runtime (``predictor_for``,
no TensorFlow) and fetch only the files that path reads; heatmap workers load its Keras
model (``heatmap_model_for``) and fetch the whole artifact.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.utils.text import slugify

from inference.models import ModelVersion

MANIFEST = "manifest.json"


def models_storage():
    return storages["models"]


def cache_root() -> Path:
    return Path(settings.VAR_DIR) / "model-cache"


def artifact_location(*, name: str, version: str, content_hash: str) -> str:
    """The artifact's folder in the models storage: readable, and unique per content."""
    digest = content_hash.removeprefix("sha256:")[:12]
    return f"{slugify(name)}-{slugify(version)}-{digest}"


def artifact_store(source: Path, location: str) -> list[str]:
    """Copy an artifact folder's files into the models storage; all of them or none.

    Files left there by an import that crashed half-way are replaced, never renamed around.
    """
    storage = models_storage()
    artifact_delete(location)
    written: list[str] = []
    try:
        for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
            if path.is_symlink():
                continue
            name = f"{location}/{path.relative_to(source).as_posix()}"
            with path.open("rb") as fh:
                written.append(storage.save(name, File(fh, name=path.name)))
    except BaseException:
        for name in written:
            storage.delete(name)
        raise
    return written


def _files(location: str) -> list[str]:
    storage = models_storage()
    try:
        dirs, files = storage.listdir(location)
    except FileNotFoundError:
        return []
    names = [f"{location}/{f}" for f in files]
    for d in dirs:
        names.extend(_files(f"{location}/{d}"))
    return names


def artifact_delete(location: str) -> None:
    storage = models_storage()
    for name in _files(location):
        storage.delete(name)


#: What a local copy is for: ``analysis`` (the ONNX path: the manifest and the files it
#: names for ONNX Runtime and the guard) or ``full`` (every file, the Keras model among
#: them: heatmaps, and re-exporting an artifact).
ROLES = ("analysis", "full")
ANALYSIS_SUFFIX = "-onnx"


def _cache_folder(model_version: ModelVersion, role: str) -> Path:
    digest = model_version.content_hash.removeprefix("sha256:")
    return cache_root() / (digest + ANALYSIS_SUFFIX if role == "analysis" else digest)


def onnx_path_files(manifest: dict) -> set[str]:
    """The artifact's files that an analysis worker reads, by the manifest's own record:
    both ONNX graphs (an admin may switch the variant), the self-test's verification
    batch and the out-of-scope guard. Not the Keras model, a third to most of the bytes."""
    entries = [manifest.get("onnx"), manifest.get("int8"), manifest.get("ood")]
    onnx = manifest.get("onnx")
    if isinstance(onnx, dict):
        entries.append(onnx.get("verification"))
    return {MANIFEST} | {e["file"] for e in entries if isinstance(e, dict) and e.get("file")}


def local_artifact(model_version: ModelVersion, *, role: str = "full") -> Path:
    """A local folder holding the version's files for ``role``, fetched from storage on
    first use. A full copy serves the analysis role too.

    Raises FileNotFoundError when the storage no longer has the artifact.
    """
    if role not in ROLES:
        raise ValueError(f"unknown artifact role {role!r} (known: {', '.join(ROLES)})")
    full = _cache_folder(model_version, "full")
    folder = _cache_folder(model_version, role)
    for candidate in (full, folder):
        if (candidate / MANIFEST).is_file():
            return candidate
    names = _files(model_version.artifact)
    manifest_name = f"{model_version.artifact}/{MANIFEST}"
    if manifest_name not in names:
        raise FileNotFoundError(f"no artifact at {model_version.artifact!r} in the models storage")
    storage = models_storage()
    if role == "analysis":
        with storage.open(manifest_name, "rb") as fh:
            wanted = onnx_path_files(json.loads(fh.read()))
        names = [n for n in names if n.removeprefix(f"{model_version.artifact}/") in wanted]
    cache_root().mkdir(parents=True, exist_ok=True)
    # Fetched into a private folder and renamed into place, so a concurrent reader never
    # sees half an artifact; the manifest is written last and marks a complete copy.
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_root()))
    try:
        for name in sorted(names, key=lambda n: n.endswith(f"/{MANIFEST}")):
            target = tmp / name.removeprefix(f"{model_version.artifact}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            with storage.open(name, "rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / MANIFEST).is_file():  # another process won the race otherwise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _cached(model_version: ModelVersion, load, *, role: str):
    """``load(fetch)`` on the local copy for ``role``; a copy that fails verification is
    fetched again once: the storage's copy is the truth, and a damaged cache must not take
    a worker out of service."""
    from runtime.artifact import ArtifactError

    def fetch() -> Path:
        return local_artifact(model_version, role=role)

    try:
        return load(fetch)
    except ArtifactError:
        # Every copy of this hash: the one used may be a full copy, with the role's
        # own (as stale) behind it.
        for each in ROLES:
            shutil.rmtree(_cache_folder(model_version, each), True)
        return load(fetch)


def predictor_for(model_version: ModelVersion):
    """This process's warmed-up ONNX Runtime Predictor for a version, in the variant its
    registry record names (ONNX Runtime is imported here, late)."""
    from runtime.predictor import cached_predictor

    return _cached(
        model_version,
        lambda fetch: cached_predictor(
            model_version.content_hash, fetch, variant=model_version.variant
        ),
        role="analysis",
    )


def heatmap_model_for(model_version: ModelVersion):
    """This process's Keras model with Grad-CAM for a version (TensorFlow is imported here)."""
    from runtime.heatmaps import cached_heatmap_model

    return _cached(
        model_version,
        lambda fetch: cached_heatmap_model(model_version.content_hash, fetch),
        role="full",
    )
