"""docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so check
what they declare."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import compose_grace_s

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_declares_the_production_services(compose):
    assert {"postgres", "redis", "web", "worker", "heatmaps", "beat"} <= set(compose["services"])
    assert compose["services"]["postgres"]["image"].startswith("postgres:")
    assert compose["services"]["redis"]["image"].startswith("redis:")


def test_web_runs_gunicorn_and_workers_run_celery(compose):
    services = compose["services"]
    assert (ROOT / "Dockerfile").exists()
    assert services["web"]["command"][:2] == ["gunicorn", "leukweb.wsgi"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "leukweb", "worker"]
    assert services["worker"]["command"][4:6] == ["-Q", "leukweb"]


def test_beat_sweeps_on_a_queue_no_analysis_backlog_can_delay(compose):
    command = compose["services"]["beat"]["command"]
    assert command[:5] == ["celery", "-A", "leukweb", "worker", "--beat"]
    assert command[command.index("-Q") + 1] == "leukweb-sweep"
    assert "leukweb-sweep" not in compose["services"]["worker"]["command"]


def _dockerfile_stages() -> dict[str, str]:
    """{stage name: its instructions} of the multi-stage Dockerfile."""
    stages, name = {}, None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            name = line.split(" AS ")[-1].strip() if " AS " in line else line
            stages[name] = ""
        elif name is not None:
            stages[name] += line + "\n"
    return stages


def test_each_role_runs_the_image_built_from_its_own_lock_file(compose):
    stages = _dockerfile_stages()
    services = compose["services"]
    for service, target in {
        "web": "web",
        "migrate": "web",
        "worker": "worker",
        "beat": "worker",
        "heatmaps": "heatmaps",
    }.items():
        assert services[service]["build"]["target"] == target, service
        assert f"requirements/{target}.txt" in stages[target], target
    assert services["web"]["image"] != services["worker"]["image"] != services["heatmaps"]["image"]
    # What each lock file holds (TensorFlow only in heatmaps.txt): tests/platform/test_lock.py


def test_analysis_and_heatmap_workers_consume_their_own_queues(compose):
    services = compose["services"]
    for service, queue in {"worker": "leukweb", "heatmaps": "heatmaps"}.items():
        command = services[service]["command"]
        assert command[command.index("-Q") + 1] == queue, service
    assert {"/data/media", "/data/models"} <= _mount_targets(services["heatmaps"])


def test_the_worker_can_be_scaled(compose):
    worker = compose["services"]["worker"]
    # A fixed name or a published port would make a second replica fail to start.
    assert "container_name" not in worker
    assert "ports" not in worker


def _mount_targets(service: dict) -> set[str]:
    targets = set()
    for volume in service["volumes"]:
        parts = volume.split(":")
        targets.add(parts[-2] if parts[-1] in ("ro", "rw") else parts[-1])
    return targets


def test_web_and_workers_share_media_models_and_the_evaluation_sets(compose):
    for name in ("web", "worker"):
        service = compose["services"][name]
        assert {"/data/media", "/data/models", "/data/evaluation-sets"} <= _mount_targets(service)
        assert service["environment"]["EVALUATION_DATA_ROOT"] == "/data/evaluation-sets"
    assert {"media", "models", "pgdata"} <= set(compose["volumes"])


def test_services_are_health_checked_and_wait_for_their_dependencies(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "web", "worker"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["web"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_production_settings_are_enforced(compose):
    env = compose["services"]["web"]["environment"]
    assert env["DEBUG"] == "False"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://")


APP_ROLES = ("migrate", "web", "worker", "beat")


def test_each_app_role_runs_in_exactly_one_storage_profile(compose):
    services = compose["services"]
    for role in APP_ROLES:
        assert services[role]["profiles"] == ["filesystem"]
        assert services[f"{role}-objectstore"]["profiles"] == ["objectstore"]
    # The databases run whichever profile is chosen.
    assert "profiles" not in services["postgres"] and "profiles" not in services["redis"]
    assert services["minio"]["profiles"] == ["objectstore"]


def test_the_objectstore_profile_shares_no_media_or_models_volume(compose):
    services = compose["services"]
    for role in APP_ROLES:
        service = services[f"{role}-objectstore"]
        mounts = _mount_targets(service)
        assert not {"/data/media", "/data/models"} & mounts, role
        env = service["environment"]
        assert env["MEDIA_STORAGE"] == env["MODELS_STORAGE"] == "s3"
        assert env["S3_ENDPOINT_URL"] == "${S3_ENDPOINT_URL:-http://minio:9000}"
        # Credentials are the operator's, never a default written here.
        assert env["S3_ACCESS_KEY_ID"].startswith("${S3_ACCESS_KEY_ID:?")
        assert env["S3_SECRET_ACCESS_KEY"].startswith("${S3_SECRET_ACCESS_KEY:?")
        assert env["DATABASE_URL"].startswith("postgres://") and env["DEBUG"] == "False"


def test_the_objectstore_profile_starts_the_store_and_checks_it_before_the_app(compose):
    services = compose["services"]
    minio = services["minio"]
    assert minio["image"].startswith("${MINIO_IMAGE:-minio/minio:")
    assert "healthcheck" in minio and "objectdata" in compose["volumes"]
    migrate = services["migrate-objectstore"]
    assert migrate["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "check_storage --create-bucket" in " ".join(migrate["command"])
    for role in ("web", "worker", "beat"):
        assert services[f"{role}-objectstore"]["depends_on"]["migrate-objectstore"][
            "condition"
        ] == ("service_completed_successfully")
    assert services["web-objectstore"]["command"][:2] == ["gunicorn", "leukweb.wsgi"]
    assert services["worker-objectstore"]["command"][:4] == ["celery", "-A", "leukweb", "worker"]
    assert "container_name" not in services["worker-objectstore"]


def test_the_objectstore_profiles_settings_load_as_a_deployment_would(compose, tmp_path):
    """The profile's environment, with .env's values filled in, is accepted by settings."""
    env = dict(compose["services"]["web-objectstore"]["environment"])
    values = {
        "SECRET_KEY": "k" * 50,
        "ALLOWED_HOSTS": "leukweb.example.org",
        "S3_ACCESS_KEY_ID": "leukweb",
        "S3_SECRET_ACCESS_KEY": "s" * 40,
    }
    resolved = {name: _interpolate(str(value), values) for name, value in env.items()}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.STORAGES['default']['BACKEND'], s.STORAGES['models']['OPTIONS']['location'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "leukweb.settings", **resolved},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["leukweb.storage.ObjectStorage", "models"]


def _interpolate(value: str, values: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, from `values`."""

    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in values:
            return values[name]
        if op == ":-":
            return rest
        raise AssertionError(f"{name} must be set in .env")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


CELERY_WORKERS = ("worker", "heatmaps", "beat")


def test_every_worker_is_given_a_grace_period_to_finish_its_task_on_stop(compose):
    """docker's default is 10 s; a worker killed after it may leave its work to the sweep."""
    services = compose["services"]
    workers = [
        name
        for name, service in services.items()
        if "celery" in service.get("command", []) and "worker" in service.get("command", [])
    ]
    assert set(CELERY_WORKERS) <= set(workers)
    for name in workers:
        assert compose_grace_s(name) >= 30, name
