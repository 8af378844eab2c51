"""Writes for the model registry: import (validated, all or nothing), deploy, roll back,
shadow, retire. Each change is a DeploymentEvent and an audit entry."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from django.core.files import File
from django.db import IntegrityError, transaction

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record, known_actor
from inference.artifacts import (
    artifact_delete,
    artifact_location,
    artifact_store,
    local_artifact,
    models_storage,
)
from inference.models import DeploymentEvent, ModelVersion, Variant
from inference.selectors import model_version_previous
from inference.services.locks import deployment_lock

# A zip that unpacks to more than this is refused before it is unpacked (a zip bomb).
MAX_UNPACKED_BYTES = 4 * 1024**3


class ModelImportError(Exception):
    """An artifact was refused; the message says why, in words an administrator can act on."""


class RegistryError(Exception):
    """A deploy, rollback, shadow or retire request that the registry's rules forbid."""


def _keras_checked(source: Path, scratch: Path) -> Path:
    """The artifact proven with its Keras model (TensorFlow): it loads, its shapes match the
    manifest, and its ONNX graph answers the verification batch as the Keras model does
    now. An artifact without a graph (formats 1 and 2) gets one, converted and verified
    on generated smears (see ``LEGACY_VERIFICATION``); returns the folder to store."""
    from runtime.artifact import artifact_onnx_add, load_guard, load_packaged, verification_load
    from runtime.export import keras_outputs, onnx_session, onnx_verify

    model, manifest = load_packaged(source)
    if manifest.onnx is None:
        batch = legacy_verification_batch(manifest.input_size)
        source, manifest = artifact_onnx_add(source, scratch / source.name, batch)
    images, _ = verification_load(source, manifest)
    guard = load_guard(source, manifest)
    spec = None if guard is None else guard.spec
    onnx_verify(
        onnx_session(source / manifest.onnx["file"]), images, keras_outputs(model, images, spec)
    )
    return source


#: What verifies the ONNX graph that import makes for an artifact packaged without one:
#: such an artifact carries no test images, and a site's uploads are patient data that
#: must not be copied into the models store, so it is generated smears (training.synth,
#: fixed seed), which exercise every layer and the guard's features like real ones.
LEGACY_VERIFICATION = (
    "32 generated smears (training.synth, seed 0): the artifact carries no test images"
)


def legacy_verification_batch(size: int):
    from runtime.artifact import VERIFICATION_IMAGES, VerificationBatch
    from training.synth import DEMO_CLASSES, generate

    per_class = -(-VERIFICATION_IMAGES // len(DEMO_CLASSES))
    images, _ = generate(DEMO_CLASSES, per_class=per_class, size=size, seed=0)
    return VerificationBatch(images[:VERIFICATION_IMAGES], LEGACY_VERIFICATION)


def model_version_import(
    *, source: Path, actor: User | None = None, keras_check: bool = True
) -> ModelVersion:
    """Register an artifact folder after proving it: hashes, the ONNX graph's answers on
    the verification batch (and the int8 variant's self-test), and with ``keras_check``
    the Keras model itself (TensorFlow; the CLI import). Without it (the web process,
    which has no TensorFlow) the Keras model is checked when a heatmap worker loads it,
    and an artifact that has no ONNX graph yet is refused with the command to use.

    Nothing is left behind when it is refused: no row, and no files in the models storage.
    """
    with tempfile.TemporaryDirectory(prefix="leukweb-onnx-") as scratch:
        return _import(Path(source), actor=actor, keras_check=keras_check, scratch=Path(scratch))


def _import(source: Path, *, actor: User | None, keras_check: bool, scratch: Path) -> ModelVersion:
    from runtime.artifact import ArtifactError, read_manifest, verification_load
    from runtime.export import onnx_verify
    from runtime.predictor import Predictor

    try:
        if keras_check:
            source = _keras_checked(source, scratch)
        elif read_manifest(source).onnx is None:
            raise ArtifactError(
                "this artifact has no ONNX graph (it was packaged before format 3); import "
                "it with `manage.py import_model PATH` on a machine with TensorFlow, which "
                "converts and verifies one"
            )
        else:
            _keras_file_checked(source)
        predictor = Predictor.load(source)
        images, expected = verification_load(source, predictor.manifest)
        onnx_verify(predictor.session, images, expected)
        if (predictor.manifest.int8 or {}).get("status") == "accepted":
            Predictor.load(source, variant="int8")
    except ArtifactError as exc:
        raise ModelImportError(f"refused: {exc}") from exc
    manifest = predictor.manifest
    label = f"{manifest.name} {manifest.version}"
    if ModelVersion.objects.filter(name=manifest.name, version=manifest.version).exists():
        raise ModelImportError(f"refused: {label} is already registered")
    twin = ModelVersion.objects.filter(content_hash=manifest.content_hash).first()
    if twin is not None:
        raise ModelImportError(f"refused: these weights are already registered as {twin}")
    report = {}
    if (source / "report.json").is_file():
        try:
            report = json.loads((source / "report.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelImportError(f"refused: report.json is not valid JSON ({exc})") from exc

    location = artifact_location(
        name=manifest.name, version=manifest.version, content_hash=manifest.content_hash
    )
    artifact_store(source, location)
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                name=manifest.name,
                version=manifest.version,
                architecture=manifest.architecture,
                classes=list(manifest.classes),
                input_size=manifest.input_size,
                artifact=location,
                content_hash=manifest.content_hash,
                manifest=manifest.to_dict(),
                report=report,
                imported_by=known_actor(actor),
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.IMPORT,
                target=version,
                detail={"content_hash": version.content_hash, "synthetic": version.is_synthetic},
            )
    except IntegrityError as exc:
        artifact_delete(location)
        raise ModelImportError(f"refused: {label} was registered at the same moment") from exc
    except BaseException:
        artifact_delete(location)
        raise
    return version


def _keras_file_checked(source: Path) -> None:
    """Without TensorFlow, the Keras file's hash and shape: a Keras 3 zip with its config."""
    from runtime.artifact import MODEL_FILE, ArtifactError, read_manifest, sha256_file

    path = source / MODEL_FILE
    expected = read_manifest(source).content_hash
    if not path.is_file() or sha256_file(path) != expected:
        raise ArtifactError(
            f"{path}: missing, or its content hash does not match the manifest's {expected}; "
            "the file was changed or corrupted"
        )
    try:
        with zipfile.ZipFile(path) as bundle:
            names = set(bundle.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: not a Keras model file ({exc})") from exc
    if not {"config.json", "model.weights.h5"} <= names:
        raise ArtifactError(f"{path}: not a Keras model file (no config and weights inside)")


def model_version_import_archive(
    *, archive: IO[bytes], actor: User | None, keras_check: bool = False
) -> ModelVersion:
    """Register a zipped artifact folder (an upload): checked, unpacked, then imported.

    The zip is refused before anything is unpacked when a member's path escapes the
    folder or the whole would unpack to more than MAX_UNPACKED_BYTES.
    """
    if not zipfile.is_zipfile(archive):
        raise ModelImportError("refused: this is not a zip file")
    archive.seek(0)
    with (
        zipfile.ZipFile(archive) as bundle,
        tempfile.TemporaryDirectory(prefix="leukweb-import-") as tmp,
    ):
        members = bundle.infolist()
        for member in members:
            path = PurePosixPath(member.filename)
            if path.is_absolute() or ".." in path.parts:
                raise ModelImportError(f"refused: unsafe path {member.filename!r} in the zip")
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise ModelImportError("refused: the zip unpacks to more than 4 GiB")
        bundle.extractall(tmp)
        manifests = sorted(Path(tmp).rglob("manifest.json"), key=lambda p: len(p.parts))
        if not manifests:
            raise ModelImportError("refused: the zip holds no manifest.json")
        return model_version_import(
            source=manifests[0].parent, actor=actor, keras_check=keras_check
        )


def _event(version: ModelVersion, action: str, actor: User | None, reason: str) -> DeploymentEvent:
    event = DeploymentEvent.objects.create(
        model_version=version, action=action, actor=known_actor(actor), reason=reason
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DEPLOY,
        target=version,
        detail={"event": action, "reason": reason},
    )
    return event


def _reason_required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RegistryError("a reason is required")
    return reason


def class_change(version: ModelVersion) -> tuple[list[str], list[str]] | None:
    """(deployed classes, this version's) when serving it would change the class set."""
    deployed = ModelVersion.objects.deployed()
    if deployed is None or deployed.pk == version.pk or deployed.classes == version.classes:
        return None
    return list(deployed.classes), list(version.classes)


def _class_change_confirmed(version: ModelVersion, accept_new_classes: bool) -> None:
    """Clinicians and reviewers read the labels a model answers with: a new set of them
    is never switched on silently."""
    change = class_change(version)
    if change and not accept_new_classes:
        before, after = (", ".join(c) for c in change)
        raise RegistryError(
            f"{version} answers with other classes ({after}) than the deployed model "
            f"({before}); confirm the change of classes to go on"
        )


def _serve(
    version: ModelVersion,
    *,
    actor: User | None,
    reason: str,
    action: str,
    accept_new_classes: bool,
) -> DeploymentEvent:
    reason = _reason_required(reason)
    with transaction.atomic():
        deployment_lock(exclusive=True)
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        _class_change_confirmed(version, accept_new_classes)
        if version.status == ModelVersion.Status.DEPLOYED:
            raise RegistryError(f"{version} is already deployed")
        if version.status == ModelVersion.Status.RETIRED:
            raise RegistryError(f"{version} is retired and cannot serve again")
        # The old one steps down first: the constraint allows one deployed row at a time.
        ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.DEPLOYED).update(
            status=ModelVersion.Status.REGISTERED
        )
        version.status = ModelVersion.Status.DEPLOYED
        version.save(update_fields=["status"])
        return _event(version, action, actor, reason)


def model_version_deploy(
    *,
    model_version: ModelVersion,
    actor: User | None,
    reason: str,
    accept_new_classes: bool = False,
) -> DeploymentEvent:
    """Make this version serve every new analysis; workers switch on their next task."""
    return _serve(
        model_version,
        actor=actor,
        reason=reason,
        action=DeploymentEvent.Action.DEPLOY,
        accept_new_classes=accept_new_classes,
    )


def model_version_rollback(
    *, actor: User | None, reason: str, accept_new_classes: bool = False
) -> DeploymentEvent:
    """Deploy again the version that served before the current one."""
    previous = model_version_previous()
    if previous is None:
        raise RegistryError("no earlier deployed version to roll back to")
    return _serve(
        previous,
        actor=actor,
        reason=reason,
        action=DeploymentEvent.Action.ROLLBACK,
        accept_new_classes=accept_new_classes,
    )


def model_version_set_shadow(
    *,
    model_version: ModelVersion,
    actor: User | None,
    reason: str,
    accept_new_classes: bool = False,
) -> DeploymentEvent:
    """Let this version predict new cases beside the deployed one, for comparison only."""
    reason = _reason_required(reason)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        _class_change_confirmed(version, accept_new_classes)
        if version.status != ModelVersion.Status.REGISTERED:
            raise RegistryError(f"{version} is {version.get_status_display().lower()}, not idle")
        ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.SHADOW).update(
            status=ModelVersion.Status.REGISTERED
        )
        version.status = ModelVersion.Status.SHADOW
        version.save(update_fields=["status"])
        return _event(version, DeploymentEvent.Action.SHADOW, actor, reason)


def model_version_retire(
    *, model_version: ModelVersion, actor: User | None, reason: str
) -> DeploymentEvent:
    """Take a registered or shadow version out of use for good (its predictions stay)."""
    reason = _reason_required(reason)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if version.status == ModelVersion.Status.DEPLOYED:
            raise RegistryError(f"{version} is deployed: deploy another version first")
        if version.status == ModelVersion.Status.RETIRED:
            raise RegistryError(f"{version} is already retired")
        version.status = ModelVersion.Status.RETIRED
        version.save(update_fields=["status"])
        return _event(version, DeploymentEvent.Action.RETIRE, actor, reason)


def model_version_variant_set(
    *, model_version: ModelVersion, variant: str, actor: User | None, reason: str
) -> DeploymentEvent:
    """Choose which of the version's ONNX graphs the analysis workers run (fp32 by
    default). int8 only when packaging accepted it; recorded and audited like a deploy,
    and workers switch on their next task."""
    reason = _reason_required(reason)
    if variant not in Variant.values:
        raise RegistryError(f"unknown variant {variant!r}")
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if version.variant == variant:
            raise RegistryError(f"{version} already serves its {variant} variant")
        if variant == Variant.INT8 and not version.int8_available:
            why = version.int8.get("reason") or "none was packaged with it"
            raise RegistryError(f"{version} has no accepted int8 variant: {why}")
        version.variant = variant
        version.save(update_fields=["variant"])
        event = DeploymentEvent.objects.create(
            model_version=version,
            action=DeploymentEvent.Action.VARIANT,
            actor=known_actor(actor),
            reason=reason,
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DEPLOY,
            target=version,
            detail={"event": DeploymentEvent.Action.VARIANT, "variant": variant, "reason": reason},
        )
    return event


def model_version_onnx_add(*, model_version: ModelVersion, actor: User | None = None) -> bool:
    """Give a version registered before artifacts carried an ONNX graph its graph, converted
    from its Keras model and verified as at import (needs TensorFlow). The weights, and so
    the content hash, are unchanged; its manifest record gains the graph. False when it
    already had one."""
    from runtime.artifact import (
        MANIFEST_FILE,
        ONNX_FILE,
        VERIFICATION_FILE,
        ArtifactError,
        artifact_onnx_add,
        read_manifest,
    )

    if model_version.manifest.get("onnx"):
        return False
    with tempfile.TemporaryDirectory(prefix="leukweb-onnx-") as scratch:
        source = local_artifact(model_version)
        try:
            folder, manifest = artifact_onnx_add(
                source,
                Path(scratch) / "artifact",
                legacy_verification_batch(read_manifest(source).input_size),
            )
        except ArtifactError as exc:
            raise ModelImportError(f"{model_version}: {exc}") from exc
        storage = models_storage()
        # The graph first, the manifest that names it last: a reader never sees a
        # manifest pointing at a missing file.
        for name in (ONNX_FILE, VERIFICATION_FILE, MANIFEST_FILE):
            target = f"{model_version.artifact}/{name}"
            storage.delete(target)
            with (folder / name).open("rb") as fh:
                storage.save(target, File(fh, name=name))
    with transaction.atomic():
        ModelVersion.objects.filter(pk=model_version.pk).update(manifest=manifest.to_dict())
        audit_record(
            actor=actor,
            action=AuditEvent.Action.IMPORT,
            target=model_version,
            detail={"onnx_added": True, "verification": LEGACY_VERIFICATION},
        )
    model_version.refresh_from_db()
    return True
