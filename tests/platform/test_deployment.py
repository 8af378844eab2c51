"""docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so check
what they declare."""

from pathlib import Path

import pytest
import yaml

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
    assert services["web"]["command"][:2] == ["gunicorn", "leukweb.wsgi"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "leukweb", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "leukweb", "beat"]
    assert (ROOT / "Dockerfile").exists()


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
    assert "--queues=leukweb" in services["worker"]["command"]
    assert "--queues=heatmaps" in services["heatmaps"]["command"]
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
