"""Response headers a hospital's security review checks first: a Content-Security-Policy
with no inline script or style, HSTS and the redirect to HTTPS behind a TLS proxy, a
Permissions-Policy, and no copy of patient data left in a browser's or a proxy's cache."""

import json
import os
import re
import secrets
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("*/templates")]
# What a strict CSP refuses to run or apply: an inline <script> (one without src=), any
# on*= event handler and any style= attribute or <style> element.
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "style element": re.compile(r"<style[\s>]", re.I),
}


def _directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


@pytest.mark.django_db
def test_pages_forbid_injected_inline_script_and_style_by_csp(client):
    policy = _directives(client.get("/login/")["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'self'"]
    assert not any("unsafe" in value for values in policy.values() for value in values)


@pytest.mark.parametrize("kind", INLINE)
def test_no_template_needs_inline_script_or_style_that_the_csp_would_block(kind):
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in TEMPLATE_DIRS
        for path in folder.rglob("*.html")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if INLINE[kind].search(line)
    ]
    assert offenders == [], f"{kind} in {offenders}: use data-* and static/js/behaviours.js"


HTTPS_SETTINGS = (
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
)
SHOW_HTTPS = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    f"print(json.dumps({{n: getattr(s, n) for n in {HTTPS_SETTINGS!r}}}))"
)


def _https_settings(**env: str) -> dict:
    """The HTTPS settings leukweb.settings makes of this environment, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", SHOW_HTTPS],
        cwd=ROOT,
        env={**_clean_env(), "DJANGO_SETTINGS_MODULE": "leukweb.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def deployed(settings, tmp_path) -> None:
    """This test process behaves as a deployment's web server would (HTTPS on by default)."""
    production = _https_settings(
        DATABASE_URL="postgres://leukweb@db.invalid:5432/leukweb",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="testserver",
        VAR_DIR=str(tmp_path),
    )
    assert production["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    for name, value in production.items():
        setattr(settings, name, tuple(value) if isinstance(value, list) else value)


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_in_a_deployment(client, deployed):
    response = client.get("/login/")
    assert response.status_code == HTTPStatus.MOVED_PERMANENTLY
    assert response["Location"] == "https://testserver/login/"


@pytest.mark.django_db
def test_a_load_balancers_plain_http_probe_of_healthz_is_answered_not_redirected(client, deployed):
    response = client.get("/healthz", REMOTE_ADDR="203.0.113.9")
    assert response.status_code in {HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE}
    assert set(response.json()) == {"status"}


@pytest.mark.django_db
def test_https_through_the_tls_proxy_pins_the_browser_to_https_with_hsts(client, deployed):
    response = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == HTTPStatus.OK
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response.cookies and all(c["secure"] for c in response.cookies.values())


def test_the_embedded_run_trusts_no_forwarded_proto_header_and_never_redirects(tmp_path):
    """The embedded run (HTTPS off) has no proxy in front: a client's X-Forwarded-Proto must
    not pass for HTTPS, and a redirect to https:// on loopback would lead nowhere."""
    embedded = _https_settings(VAR_DIR=str(tmp_path))
    assert embedded["SECURE_PROXY_SSL_HEADER"] is None
    assert not embedded["SECURE_SSL_REDIRECT"] and embedded["SECURE_HSTS_SECONDS"] == 0
    assert not embedded["SESSION_COOKIE_SECURE"]


@pytest.mark.django_db
def test_pages_turn_off_browser_features_by_permissions_policy(client):
    policy = client.get("/login/")["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "usb", "payment"):
        assert f"{feature}=()" in policy


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_patient_data_pages_are_never_cached_by_a_ward_computers_browser(
    client_for, alice, alice_case
):
    client = client_for(alice)
    for path in (
        "/cases/",
        f"/cases/{alice_case.pk}/",
        f"/patients/{alice_case.patient_id}/",
        f"/images/{alice_case.images.first().pk}/thumbnail/",
        "/cases/99999/",
    ):
        response = client.get(path)
        assert _no_store(response), (path, response.status_code, response.get("Cache-Control"))
        assert "private" in response["Cache-Control"]


def test_api_responses_are_never_cached_errors_included(api_for, alice, alice_case):
    api = api_for(alice)
    for path in ("/api/cases/", f"/api/cases/{alice_case.pk}/", "/api/cases/99999/", "/api/x/"):
        assert _no_store(api.get(path)), path
    assert _no_store(api.post("/api/cases/", {}))


def _clean_env() -> dict[str, str]:
    unset = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DEBUG", "SECRET_KEY", "HTTPS"}
    unset |= {"ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_COOKIES"}
    return {k: v for k, v in os.environ.items() if k not in unset}


def test_check_deploy_reports_nothing_under_production_settings(tmp_path):
    env = {
        **_clean_env(),
        "DJANGO_SETTINGS_MODULE": "leukweb.settings",
        "DATABASE_URL": "postgres://leukweb@db.invalid:5432/leukweb",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "leukweb.example.org",
        "VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_a_browser_gets_json_from_the_api_not_drfs_html_pages_with_inline_scripts(
    client_for, alice
):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # Chromium's
    response = client_for(alice).get("/api/cases/", headers={"Accept": accept})
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    assert "<script" not in response.content.decode()
