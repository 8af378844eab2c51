"""Importing, deploying, rolling back and shadowing model versions."""

import json

import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from inference.models import DeploymentEvent, ModelVersion
from inference.selectors import model_version_previous
from inference.services.registry import (
    ModelImportError,
    RegistryError,
    model_version_deploy,
    model_version_import,
    model_version_retire,
    model_version_rollback,
    model_version_set_shadow,
)

pytestmark = pytest.mark.django_db


def _nothing_left_behind():
    assert not ModelVersion.objects.exists()
    dirs, files = storages["models"].listdir("") if storages["models"].exists("") else ([], [])
    stored = [d for d in dirs if storages["models"].listdir(d)[1]]
    assert not stored and not files, (dirs, files)


def test_import_stores_the_artifact_and_records_who_imported_it(artifacts, admin_user):
    version = model_version_import(source=artifacts["v1"], actor=admin_user)
    assert (version.name, version.version, version.status) == ("tiny", "v1", "registered")
    assert version.classes == ["healthy", "ALL", "AML", "CLL", "CML"]
    assert version.is_synthetic and version.content_hash.startswith("sha256:")
    assert storages["models"].exists(f"{version.artifact}/model.keras")
    assert AuditEvent.objects.filter(action="import", target_id=str(version.pk)).exists()


def test_a_corrupt_artifact_is_refused_and_leaves_nothing(artifact_copy):
    folder = artifact_copy()
    data = bytearray((folder / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.keras").write_bytes(bytes(data))
    with pytest.raises(ModelImportError, match=r"content hash .* does not match"):
        model_version_import(source=folder)
    _nothing_left_behind()


def test_a_manifest_with_the_wrong_number_of_classes_is_refused(artifact_copy):
    folder = artifact_copy()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["classes"] = ["healthy", "ALL", "AML"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelImportError, match="outputs 5 values but the manifest lists 3"):
        model_version_import(source=folder)
    _nothing_left_behind()


def test_a_file_that_is_not_a_model_is_refused_even_with_a_matching_hash(artifact_copy):
    from runtime.artifact import sha256_file

    folder = artifact_copy()
    (folder / "model.keras").write_bytes(b"not a keras file")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["content_hash"] = sha256_file(folder / "model.keras")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelImportError, match="Keras cannot load it"):
        model_version_import(source=folder)
    _nothing_left_behind()


def test_the_same_version_cannot_be_imported_twice(artifacts):
    model_version_import(source=artifacts["v1"])
    with pytest.raises(ModelImportError, match="already registered"):
        model_version_import(source=artifacts["v1"])
    assert ModelVersion.objects.count() == 1


def test_the_import_command_reports_a_refusal_clearly(artifact_copy, tmp_path):
    with pytest.raises(CommandError, match="no such artifact folder"):
        call_command("import_model", str(tmp_path / "missing"))
    call_command("import_model", str(artifact_copy("v2")), "--deploy", "--reason", "first")
    deployed = ModelVersion.objects.deployed()
    assert deployed is not None and deployed.version == "v2"


def test_deploy_rollback_shadow_and_retire_keep_one_deployed_and_a_history(artifacts, admin_user):
    v1 = model_version_import(source=artifacts["v1"])
    v2 = model_version_import(source=artifacts["v2"])
    with pytest.raises(RegistryError, match="reason is required"):
        model_version_deploy(model_version=v1, actor=admin_user, reason=" ")
    model_version_deploy(model_version=v1, actor=admin_user, reason="first model")
    model_version_set_shadow(model_version=v2, actor=admin_user, reason="compare")
    assert ModelVersion.objects.shadow() == v2
    model_version_deploy(model_version=v2, actor=admin_user, reason="better on validation")
    assert ModelVersion.objects.deployed() == v2 and ModelVersion.objects.shadow() is None
    assert model_version_previous() == v1

    model_version_rollback(actor=admin_user, reason="clinicians report drift")
    assert ModelVersion.objects.deployed() == v1
    assert ModelVersion.objects.get(pk=v2.pk).status == "registered"
    with pytest.raises(RegistryError, match="deploy another version first"):
        model_version_retire(model_version=v1, actor=admin_user, reason="old")
    model_version_retire(model_version=v2, actor=admin_user, reason="superseded")
    with pytest.raises(RegistryError, match="retired"):
        model_version_deploy(model_version=v2, actor=admin_user, reason="again")
    actions = list(DeploymentEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["deploy", "shadow", "deploy", "rollback", "retire"]
    assert AuditEvent.objects.filter(action="deploy").count() == 5


def test_ensure_demo_model_deploys_the_registered_demo_without_training(tmp_path, artifacts):
    from tests.helpers import package

    demo = model_version_import(
        source=package(tmp_path, version="1", seed=3, name="demo-synthetic")
    )
    call_command("ensure_demo_model")
    assert ModelVersion.objects.deployed() == demo
    assert DeploymentEvent.objects.get().reason == "demo"
    call_command("ensure_demo_model")  # a deployed model is left alone
    assert DeploymentEvent.objects.count() == 1
