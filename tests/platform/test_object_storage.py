"""Media and models in an S3-compatible store, chosen by settings: against a real
S3-protocol server (moto's, on loopback), reached through a relay a test can cut."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.core.management import CommandError, call_command

from leukweb.storage import ObjectStoreError

ROOT = Path(__file__).resolve().parents[2]

PRINT_STORAGES = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: s.STORAGES[k] for k in ('default', 'models')}, default=str))"
)


def storages_for(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "MEDIA_", "MODELS_"))}
    return subprocess.run(
        [sys.executable, "-c", PRINT_STORAGES],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "leukweb.settings", "DEBUG": "True", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_default_is_this_machines_folders():
    result = storages_for()
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    assert chosen["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert chosen["models"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"


def test_an_object_store_is_configured_with_credentials_from_files(tmp_path):
    (tmp_path / "key-id").write_text("AKIDFROMFILE\n")
    (tmp_path / "secret").write_text("secret-from-file\n")
    result = storages_for(
        MEDIA_STORAGE="s3",
        MODELS_STORAGE="s3",
        S3_BUCKET="lab-leukweb",
        S3_PREFIX="/site-3/",
        S3_ENDPOINT_URL="https://minio.lab.example:9000",
        S3_REGION="eu-central-1",
        S3_ACCESS_KEY_ID_FILE=str(tmp_path / "key-id"),
        S3_SECRET_ACCESS_KEY_FILE=str(tmp_path / "secret"),
        S3_ADDRESSING_STYLE="path",
        S3_SERVER_SIDE_ENCRYPTION="True",
    )
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    media, models = chosen["default"]["OPTIONS"], chosen["models"]["OPTIONS"]
    assert chosen["default"]["BACKEND"] == "leukweb.storage.ObjectStorage"
    assert (media["location"], models["location"]) == ("site-3/media", "site-3/models")
    assert media["bucket_name"] == models["bucket_name"] == "lab-leukweb"
    assert media["access_key"] == "AKIDFROMFILE"
    assert media["secret_key"] == "secret-from-file"
    assert media["endpoint_url"] == "https://minio.lab.example:9000"
    assert media["region_name"] == "eu-central-1"
    assert media["addressing_style"] == "path"
    assert media["object_parameters"] == {"ServerSideEncryption": "AES256"}
    # Written once, private, never a public URL.
    assert media["file_overwrite"] is False
    assert media["default_acl"] is None
    assert media["querystring_auth"] is True


def test_a_kms_key_asks_for_kms_encryption():
    result = storages_for(
        MEDIA_STORAGE="s3",
        S3_BUCKET="b",
        S3_SERVER_SIDE_ENCRYPTION="True",
        S3_KMS_KEY_ID="arn:aws:kms:eu-west-1:1:key/k",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["default"]["OPTIONS"]["object_parameters"] == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "arn:aws:kms:eu-west-1:1:key/k",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDIA_STORAGE": "s3"}, "MEDIA_STORAGE=s3 needs S3_BUCKET"),
        ({"MODELS_STORAGE": "nfs"}, "MODELS_STORAGE must be filesystem or s3"),
        ({"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "S3_ADDRESSING_STYLE": "dns"}, "ADDRESSING"),
        (
            {"MEDIA_STORAGE": "s3", "S3_BUCKET": "b", "S3_SERVER_SIDE_ENCRYPTION": "yes"},
            "S3_SERVER_SIDE_ENCRYPTION must be True or False",
        ),
    ],
)
def test_a_wrong_storage_setting_stops_the_start(env, message):
    result = storages_for(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_files_go_under_their_prefix_and_are_never_overwritten(object_store):
    first = default_storage.save("smears/1/a.png", ContentFile(b"first"))
    second = default_storage.save("smears/1/a.png", ContentFile(b"second"))
    artifact = storages["models"].save("demo-1-abc/manifest.json", ContentFile(b"{}"))

    assert first == "smears/1/a.png" and second != first
    assert object_store.objects() == sorted(
        ["media/smears/1/a.png", f"media/{second}", f"models/{artifact}"]
    )
    with default_storage.open(first) as fh:
        assert fh.read() == b"first"


def test_server_side_encryption_is_asked_for_when_configured(object_store, settings, monkeypatch):
    from leukweb.settings import file_storage

    monkeypatch.setenv("S3_SERVER_SIDE_ENCRYPTION", "True")
    settings.STORAGES = {**settings.STORAGES, "default": file_storage("media", root=Path("-"))}
    name = default_storage.save("smears/2/b.png", ContentFile(b"pixels"))

    head = object_store.client().head_object(Bucket=object_store.bucket, Key=f"media/{name}")
    assert head["ServerSideEncryption"] == "AES256"


def test_a_missing_object_is_file_not_found(object_store):
    with pytest.raises(FileNotFoundError):
        default_storage.open("smears/9/gone.png")
    with pytest.raises(FileNotFoundError):
        default_storage.size("smears/9/gone.png")
    assert not default_storage.exists("smears/9/gone.png")


def test_a_missing_bucket_is_an_outage_not_a_missing_file(object_store):
    object_store.client().delete_bucket(Bucket=object_store.bucket)
    for call in (
        lambda: default_storage.open("smears/9/gone.png"),
        lambda: default_storage.save("x.png", ContentFile(b"x")),
        lambda: default_storage.listdir("smears"),
    ):
        with pytest.raises(ObjectStoreError, match=object_store.bucket):
            call()


def test_an_unreachable_store_raises_an_os_error_that_is_not_file_not_found(object_store):
    name = default_storage.save("smears/3/c.png", ContentFile(b"pixels"))
    object_store.relay.cut()
    for call in (
        lambda: default_storage.open(name),
        lambda: default_storage.save("smears/3/d.png", ContentFile(b"more")),
        lambda: default_storage.listdir("smears"),
        lambda: default_storage.delete(name),
    ):
        with pytest.raises(ObjectStoreError) as raised:
            call()
        assert not isinstance(raised.value, FileNotFoundError)

    object_store.relay.restore()
    with default_storage.open(name) as fh:
        assert fh.read() == b"pixels"


def test_check_storage_proves_both_stores_and_leaves_nothing(object_store):
    out = io.StringIO()
    call_command("check_storage", stdout=out)
    assert f"media: ok (bucket {object_store.bucket!r}, prefix 'media'" in out.getvalue()
    assert "models: ok" in out.getvalue()
    assert object_store.objects() == []


def test_check_storage_fails_loudly_on_an_unreachable_store(object_store):
    object_store.relay.cut()
    with pytest.raises(CommandError, match=r"media storage .* failed"):
        call_command("check_storage", stdout=io.StringIO())


def test_check_storage_creates_a_missing_bucket_on_request(object_store):
    object_store.client().delete_bucket(Bucket=object_store.bucket)
    with pytest.raises(CommandError, match="bucket does not exist"):
        call_command("check_storage", stdout=io.StringIO())
    out = io.StringIO()
    call_command("check_storage", "--create-bucket", stdout=out)
    assert f"created bucket {object_store.bucket!r}" in out.getvalue()
    assert "media: ok" in out.getvalue() and "models: ok" in out.getvalue()


def test_check_storage_works_on_this_machines_folders():
    out = io.StringIO()
    call_command("check_storage", stdout=out)
    assert "media: ok (folder" in out.getvalue()
