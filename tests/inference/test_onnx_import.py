"""Import proves an artifact's ONNX graph, gives one to an artifact packaged without, and
lets an admin choose the int8 variant, audited like a deploy."""

import json
import shutil
from collections import OrderedDict

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command

import runtime.predictor
from audit.models import AuditEvent
from inference.artifacts import predictor_for
from inference.models import DeploymentEvent, ModelVersion
from inference.services.registry import (
    LEGACY_VERIFICATION,
    ModelImportError,
    RegistryError,
    model_version_import,
    model_version_variant_set,
)
from runtime.artifact import ONNX_FILE, VERIFICATION_FILE, ArtifactError, sha256_file
from tests.runtime.test_export import perturb_weights, rehash

pytestmark = pytest.mark.django_db


def without_graph(folder):
    """The artifact as format 2 packaged it: no ONNX graph, no verification batch."""
    (folder / ONNX_FILE).unlink()
    (folder / VERIFICATION_FILE).unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["onnx"]
    manifest["format_version"] = 2
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("keras_check", [True, False], ids=["command", "web"])
def test_a_tampered_graph_is_refused_with_the_reason_and_leaves_nothing(artifact_copy, keras_check):
    folder = artifact_copy("v1")
    perturb_weights(folder, scale=0.5)
    rehash(folder)
    with pytest.raises(ModelImportError, match=r"refused: the ONNX graph.*not the same model"):
        model_version_import(source=folder, keras_check=keras_check)
    assert not ModelVersion.objects.exists()
    assert not storages["models"].exists("")  # refused before anything was stored


def test_a_graph_of_another_model_is_refused(artifact_copy, artifacts):
    folder = artifact_copy("v1")
    shutil.copyfile(artifacts["v2"] / ONNX_FILE, folder / ONNX_FILE)
    rehash(folder)
    with pytest.raises(ModelImportError, match="not the same model"):
        model_version_import(source=folder, keras_check=False)


def test_an_artifact_without_a_graph_gets_one_verified_at_import(artifact_copy):
    folder = without_graph(artifact_copy("v1"))
    version = model_version_import(source=folder)
    check = version.manifest["onnx"]["verification"]
    assert check["source"] == LEGACY_VERIFICATION and check["images"] == 32
    assert check["max_abs_diff"] <= 1e-4
    stored = storages["models"]
    assert stored.exists(f"{version.artifact}/{ONNX_FILE}")
    assert version.manifest["format_version"] == 3
    # The Keras file, and so the registry's identity of the model, is unchanged.
    assert version.content_hash == sha256_file(folder / "model.keras")
    assert not (folder / ONNX_FILE).exists()  # the source folder itself is left as it was
    assert predictor_for(version).manifest.onnx is not None


def test_the_web_import_refuses_an_artifact_without_a_graph_and_names_the_command(
    artifact_copy,
):
    with pytest.raises(ModelImportError, match=r"no ONNX graph.*manage\.py import_model"):
        model_version_import(source=without_graph(artifact_copy("v1")), keras_check=False)
    assert not ModelVersion.objects.exists()


def test_an_admin_chooses_the_int8_variant_audited_and_workers_serve_it(int8_artifact, admin_user):
    version = model_version_import(source=int8_artifact)
    assert version.variant == "fp32" and version.int8_available
    event = model_version_variant_set(
        model_version=version, variant="int8", actor=admin_user, reason="2.5x faster, same labels"
    )
    version.refresh_from_db()
    assert version.variant == "int8" and event.action == DeploymentEvent.Action.VARIANT
    entry = AuditEvent.objects.get(target_id=str(version.pk), action="deploy")
    assert entry.detail["variant"] == "int8" and entry.actor == admin_user
    assert predictor_for(version).variant == "int8"
    with pytest.raises(RegistryError, match="already serves its int8"):
        model_version_variant_set(
            model_version=version, variant="int8", actor=admin_user, reason="again"
        )


def test_int8_cannot_be_chosen_without_an_accepted_variant_nor_without_a_reason(
    artifacts, admin_user
):
    version = model_version_import(source=artifacts["v1"])
    with pytest.raises(RegistryError, match="no accepted int8 variant"):
        model_version_variant_set(
            model_version=version, variant="int8", actor=admin_user, reason="faster"
        )
    with pytest.raises(RegistryError, match="reason is required"):
        model_version_variant_set(
            model_version=version, variant="int8", actor=admin_user, reason=""
        )
    version.refresh_from_db()
    assert version.variant == "fp32" and not version.events.exists()


def test_a_version_registered_before_graphs_gets_one_from_the_command_and_serves_again(
    artifacts, settings, tmp_path, monkeypatch
):
    # A worker that never loaded these weights: no local copy, nothing in its memory.
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.setattr(runtime.predictor, "_cache", OrderedDict())
    version = model_version_import(source=artifacts["v1"])
    # As a version imported by the previous release: no graph in its record or storage.
    manifest = dict(version.manifest, format_version=2)
    del manifest["onnx"]
    ModelVersion.objects.filter(pk=version.pk).update(manifest=manifest)
    for name in (ONNX_FILE, VERIFICATION_FILE):
        storages["models"].delete(f"{version.artifact}/{name}")
    storages["models"].delete(f"{version.artifact}/manifest.json")
    storages["models"].save(
        f"{version.artifact}/manifest.json", ContentFile(json.dumps(manifest).encode())
    )
    version.refresh_from_db()
    with pytest.raises(ArtifactError, match="has no ONNX graph"):
        predictor_for(version)

    call_command("export_onnx")
    version.refresh_from_db()
    assert version.manifest["onnx"]["verification"]["source"] == LEGACY_VERIFICATION
    assert storages["models"].exists(f"{version.artifact}/{ONNX_FILE}")
    # The worker's cached copy without a graph is replaced by the store's new one.
    assert predictor_for(version).manifest.onnx == version.manifest["onnx"]
    assert AuditEvent.objects.filter(target_id=str(version.pk), detail__onnx_added=True).exists()
    call_command("export_onnx")  # nothing left to do: a no-op
