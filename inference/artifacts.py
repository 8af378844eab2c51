"""Model artifact files in the "models" storage, and this machine's local copies of them.

Artifacts are written and read only through Django's storage API, so workers on other
machines can share them through object storage by configuration alone. TensorFlow needs
a local folder, so each machine keeps a copy per content hash under VAR_DIR/model-cache:
a hash names exactly one set of bytes, so a copy never goes stale.

Analysis workers load the version's ONNX graph with ONNX Runtime (``predictor_for``,
no TensorFlow); heatmap workers load its Keras model (``heatmap_model_for``).
"""

from __future__ import annotations

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


def local_artifact(model_version: ModelVersion) -> Path:
    """A local folder holding the version's files, fetched from storage on first use.

    Raises FileNotFoundError when the storage no longer has the artifact.
    """
    folder = cache_root() / model_version.content_hash.removeprefix("sha256:")
    if (folder / MANIFEST).is_file():
        return folder
    names = _files(model_version.artifact)
    if not any(n.endswith(f"/{MANIFEST}") for n in names):
        raise FileNotFoundError(f"no artifact at {model_version.artifact!r} in the models storage")
    storage = models_storage()
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


def _cached(model_version: ModelVersion, load):
    """``load(fetch)`` on the local copy; a copy that fails verification is fetched again
    once: the storage's copy is the truth, and a damaged cache must not take a worker out
    of service."""
    from runtime.artifact import ArtifactError

    def fetch() -> Path:
        return local_artifact(model_version)

    try:
        return load(fetch)
    except ArtifactError:
        shutil.rmtree(cache_root() / model_version.content_hash.removeprefix("sha256:"), True)
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
    )


def heatmap_model_for(model_version: ModelVersion):
    """This process's Keras model with Grad-CAM for a version (TensorFlow is imported here)."""
    from runtime.heatmaps import cached_heatmap_model

    return _cached(
        model_version, lambda fetch: cached_heatmap_model(model_version.content_hash, fetch)
    )
