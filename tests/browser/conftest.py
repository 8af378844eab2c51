"""The real app for browser tests: a web server and a Celery worker, each its own
process, on a fresh embedded install (SQLite, filesystem broker) in a temporary VAR_DIR,
with the personas and a tiny deployed model; Debian's Chromium driven by Playwright.

On a failure the test's screenshot and the page's console log are kept under
``var/browser-failures/`` (and printed with the failure).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, free_port, generated_set, package

PASSWORDS = {name: f"{name}-ward-round-7" for name in ("alice", "bob", "charlie", "admin")}
# The reviewer's and the administrator's authenticator apps, as if they had enrolled.
AUTHENTICATOR_KEYS = {"bob": "3132333435363738393031323334353637383930", "admin": "a1" * 20}
PERSONAS = """
from django_otp.plugins.otp_totp.models import TOTPDevice
from accounts.models import Role
from accounts.services import user_create
for name, role, teams in [("alice", Role.CLINICIAN, ["Team A"]), ("bob", Role.REVIEWER, ["Team A"]),
                          ("charlie", Role.CLINICIAN, ["Team B"]), ("admin", Role.ADMIN, [])]:
    user, _ = user_create(username=name, role=role, teams=teams, password=PASSWORDS[name])
    if name in KEYS:
        TOTPDevice.objects.create(user=user, name="phone", key=KEYS[name], confirmed=True)
"""
# The time step each persona's last code was for: the server takes a step only once.
_USED_STEPS: dict[str, int] = {}


def one_time_code(username: str) -> str:
    """What the persona's authenticator app shows: the current step's code, or the next
    one's (the server allows a step of drift) when this one was used, waiting if need be."""
    from django_otp.oath import hotp

    now = int(time.time()) // 30
    step = max(now, _USED_STEPS.get(username, -1) + 1)
    if step > now + 1:
        time.sleep((step - 1) * 30 - time.time() + 0.2)
    _USED_STEPS[username] = step
    return f"{hotp(bytes.fromhex(AUTHENTICATOR_KEYS[username]), step):06d}"


FAILURES = REPO_ROOT / "var" / "browser-failures"
CSP_VIOLATION_PREFIX = "CSP violation:"
CSP_VIOLATION_REPORTER = f"""
document.addEventListener("securitypolicyviolation", (event) => {{
  console.error(`{CSP_VIOLATION_PREFIX} ${{event.effectiveDirective}} blocked `
    + `${{event.blockedURI || "inline"}} at ${{event.sourceFile}}:${{event.lineNumber}} `
    + `(${{event.sample}})`);
}});
"""


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def _wait_for(url: str, *, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == status:
                    return
        except OSError as exc:
            if getattr(exc, "code", None) == status:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer {status} within {timeout:.0f} s")


class LiveApp(str):
    """The base URL of the running app, which also knows where serve logs."""

    def __new__(cls, url: str, log: Path, manage) -> LiveApp:
        app = super().__new__(cls, url)
        app.log = log
        app.manage = manage
        return app

    log: Path
    manage: Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def live_app(tmp_path_factory) -> Iterator[LiveApp]:
    """A running LeukWeb on a fresh install: `manage.py serve` (web and worker)."""
    var = tmp_path_factory.mktemp("browser-var")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update(
        VAR_DIR=str(var),
        MODELS_ROOT=str(var / "models"),
        DJANGO_SETTINGS_MODULE="leukweb.settings_test",
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )

    def manage(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True, **kwargs,
        )  # fmt: skip

    manage("migrate", "--noinput")
    manage("shell", "-c", f"PASSWORDS = {PASSWORDS!r}\nKEYS = {AUTHENTICATOR_KEYS!r}\n{PERSONAS}")
    artifact = package(var / "artifacts", version="1", seed=3, name="browser-tiny")
    manage("import_model", str(artifact), "--deploy", "--reason", "browser tests")
    # A labelled set for local evaluations (EVALUATION_DATA_ROOT defaults to VAR_DIR's).
    generated_set(var / "evaluation-sets" / "site")

    port = free_port()
    # What `make run` starts: serve, which runs the web server and a worker and keeps
    # both running.
    log = (var / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", status=200, timeout=90)
        yield LiveApp(base, var / "serve.log", manage)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # The machine has no network: background services would only fail to connect.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.outcome_failed = report.failed
    return report


@pytest.fixture
def open_page(browser, live_app, request):
    """``open_page()`` gives a fresh browser context's page (its own cookies); each
    keeps its console messages, saved with a screenshot if the test fails."""
    opened = []

    def new_page(width: int = 1280, height: int = 900):
        context = browser.new_context(
            viewport={"width": width, "height": height}, base_url=live_app
        )
        # Playwright's init scripts are not subject to the page's CSP: this one reports
        # every violation of it to the console, where the teardown below finds them.
        context.add_init_script(CSP_VIOLATION_REPORTER)
        page = context.new_page()
        page.console_messages = []
        page.on("console", lambda message: page.console_messages.append(message.text))
        page.set_default_timeout(15_000)
        opened.append((context, page))
        return page

    yield new_page
    failed = getattr(request.node, "outcome_failed", False)
    violations = [
        text
        for _, page in opened
        for text in page.console_messages
        if text.startswith(CSP_VIOLATION_PREFIX)
    ]
    for n, (context, page) in enumerate(opened):
        if failed or violations:
            FAILURES.mkdir(parents=True, exist_ok=True)
            stem = FAILURES / f"{request.node.name}-{n}"
            page.screenshot(path=f"{stem}.png", full_page=True)
            Path(f"{stem}.console.txt").write_text("\n".join(page.console_messages))
        context.close()
    if violations:
        # A new inline handler, <script> or style= would be blocked for real users.
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations))


@pytest.fixture
def login(open_page):
    """``login("alice")``: a page of a fresh browser, logged in as that persona (a laptop's
    screen unless ``width`` and ``height`` say otherwise), with the code from the persona's
    authenticator app when they have one."""

    def as_user(username: str, **screen: int):
        page = open_page(**screen)
        page.goto("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORDS[username])
        page.click("button[type=submit]")
        if username in AUTHENTICATOR_KEYS:
            page.wait_for_url("**/login/verify/**")
            page.fill("#id_code", one_time_code(username))
            page.click("button[type=submit]")
        page.wait_for_url("**/cases/")
        return page

    return as_user
