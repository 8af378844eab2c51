"""docker-compose.yml cannot be run here (no Docker engine), so check what it declares."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_declares_the_production_services(compose):
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose["services"])
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
