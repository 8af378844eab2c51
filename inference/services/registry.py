"""Writes for the model registry: import (validated, all or nothing), deploy, roll back,
shadow, retire. Each change is a DeploymentEvent and an audit entry."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from django.db import IntegrityError, transaction

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record, known_actor
from inference.artifacts import artifact_delete, artifact_location, artifact_store
from inference.models import DeploymentEvent, ModelVersion
from inference.selectors import model_version_previous

# A zip that unpacks to more than this is refused before it is unpacked (a zip bomb).
MAX_UNPACKED_BYTES = 4 * 1024**3


class ModelImportError(Exception):
    """An artifact was refused; the message says why, in words an administrator can act on."""


class RegistryError(Exception):
    """A deploy, rollback, shadow or retire request that the registry's rules forbid."""


def model_version_import(*, source: Path, actor: User | None = None) -> ModelVersion:
    """Register an artifact folder after proving it: hash, load, and one test image.

    Nothing is left behind when it is refused: no row, and no files in the models storage.
    """
    from runtime.artifact import ArtifactError
    from runtime.predictor import Predictor

    source = Path(source)
    try:
        predictor = Predictor.load(source)
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


def model_version_import_archive(*, archive: IO[bytes], actor: User | None) -> ModelVersion:
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
        return model_version_import(source=manifests[0].parent, actor=actor)


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
