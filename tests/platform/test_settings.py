"""Settings come from the environment and refuse unsafe production values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CELERY_RESULT_BACKEND)"
)


PRODUCTION_DB = "postgres://u@db:5432/leukweb"


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DEBUG", "SECRET_KEY", "VAR_DIR"}
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "leukweb.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_default_needs_no_server():
    result = run_settings()
    assert result.returncode == 0, result.stderr
    engine, broker, backend = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert broker == "filesystem://"
    assert backend.startswith("file://")


def test_production_urls_come_from_the_environment():
    result = run_settings(
        DATABASE_URL=PRODUCTION_DB,
        REDIS_URL="redis://cache:6379/0",
        SECRET_KEY="k" * 50,
        ALLOWED_HOSTS="example.org",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://cache:6379/0",
        "redis://cache:6379/0",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": PRODUCTION_DB, "ALLOWED_HOSTS": "example.org"}, "SECRET_KEY"),
        ({"DATABASE_URL": PRODUCTION_DB, "SECRET_KEY": "x" * 50}, "ALLOWED_HOSTS"),
        ({"DEBUG": "False", "SECRET_KEY": "short", "ALLOWED_HOSTS": "example.org"}, "SECRET_KEY"),
        ({"DEBUG": "yes"}, "DEBUG must be True or False"),
        ({"LOGIN_LOCKOUT_BY": "user"}, "LOGIN_LOCKOUT_BY takes username"),
        ({"SECOND_FACTOR_REQUIRED_FOR_ALL": "yes"}, "must be True or False"),
        ({"SESSION_IDLE_TIMEOUT": "30m"}, "SESSION_IDLE_TIMEOUT must be an integer"),
    ],
)
def test_it_refuses_to_start_with_unsafe_or_invalid_settings(env, message):
    result = run_settings(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")
    result = run_settings(DEBUG="False", SECRET_KEY_FILE=str(secret), ALLOWED_HOSTS="example.org")
    assert result.returncode == 0, result.stderr


SHOW_SAFETY = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DEBUG, s.SECRET_KEY, s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE)"
)


def test_the_default_run_is_not_in_debug_mode_and_keeps_its_own_secret_key(tmp_path):
    var = tmp_path / "var"

    def settings_now() -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", SHOW_SAFETY],
            cwd=ROOT,
            env={
                **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}},
                "DJANGO_SETTINGS_MODULE": "leukweb.settings",
                "VAR_DIR": str(var),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split(" ", 2)

    debug, key, rest = settings_now()
    assert debug == "False" and len(key) >= 50
    assert "localhost" in rest and rest.strip().endswith("False")  # plain HTTP on loopback
    assert (var / "secret-key").stat().st_mode & 0o777 == 0o600
    assert settings_now()[1] == key  # made once, then kept
