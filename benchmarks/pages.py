"""Page benchmark: ``python -m benchmarks.pages`` measures the busiest pages at 100,000 cases.

In the PostgreSQL database named by DATABASE_URL (a throwaway one: it migrates it, and
seeds it with ``seed_demo_cases`` until it holds ``--cases`` cases; a later run reuses
them), it starts gunicorn as docker-compose.yml does (DEBUG=False, 3 workers, static
files collected), signs a clinician and a reviewer in through the real login (the
reviewer with a code from the TOTP device enrolled for it), and times each page
``--requests`` times after a warm-up, one request at a time: p50 and p95 in ms. The
table goes into its section of docs/benchmarks.md and into docs/benchmarks.json under
"pages", kept per ``--record`` ("before" for a run on code before a change, "after" by
default), so that a rerun replaces only its own figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from benchmarks.report import json_section_write, percentile, section_write

ROOT = Path(__file__).resolve().parent.parent
TEAMS = ["Bench Haematology A", "Bench Haematology B"]
TARGET_P95_MS = 150.0


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    reviewer_only: bool = False


def pages(search: str) -> list[Page]:
    """What is measured: the lists a ward opens all day, as each role may see them."""
    return [
        # The floor: a signed-in page with no list (sessions, second factor, a template);
        # on a loaded machine it shows how much of every figure is the machine's.
        Page("floor: account page", "/account/"),
        Page("case list", "/cases/"),
        Page("case list, status filter", "/cases/?status=analysed"),
        Page("case list, search ?q=", f"/cases/?q={search}"),
        Page("patients", "/patients/"),
        Page("review queue", "/reviews/", reviewer_only=True),
        Page("predictions audit", "/reviews/predictions/", reviewer_only=True),
        Page("agreement", "/reviews/agreement/", reviewer_only=True),
        Page("API case list", "/api/cases/"),
    ]


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure(var_dir: Path) -> dict[str, str]:
    """The environment of a production web process, shared by this process and gunicorn,
    but on plain HTTP (HTTPS=False: no redirect to https://, cookies without the secure
    flag): the client talks to gunicorn directly, as a TLS proxy in front of it would."""
    var_dir.mkdir(parents=True, exist_ok=True)
    key = var_dir / "secret-key"
    if not key.exists():
        key.write_text(secrets.token_urlsafe(50), encoding="utf-8")
    env = {
        "DEBUG": "False",
        "SECRET_KEY": key.read_text(encoding="utf-8").strip(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "HTTPS": "False",
        "SECURE_COOKIES": "False",
        "VAR_DIR": str(var_dir),
        "STATIC_ROOT": str(var_dir / "static"),
        "DJANGO_SETTINGS_MODULE": "leukweb.settings",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def model_version_ready() -> Any:
    """The deployed version, or an untrained CML-1 packaged, imported and deployed now
    (the pages read its rows, never its weights)."""
    from benchmarks.inference import package, png
    from inference.models import ModelVersion
    from inference.services.registry import model_version_deploy, model_version_import

    deployed = ModelVersion.objects.deployed()
    if deployed is not None:
        return deployed
    with tempfile.TemporaryDirectory(prefix="leukweb-bench-pages-") as out:
        folder = package("cml1", 64, Path(out), version="pages", verify=[png(1, 64), png(2, 64)])
        version = model_version_import(source=folder, keras_check=False)
    model_version_deploy(model_version=version, actor=None, reason="page benchmark")
    return version


def users_ready() -> dict[str, tuple[str, str]]:
    """A clinician and a reviewer in both benchmark teams (they see every seeded case),
    with fresh passwords; the reviewer with a confirmed TOTP device."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import Role, Team, User
    from accounts.services import user_create

    accounts: dict[str, tuple[str, str]] = {}
    for username, role in (("bench-clinician", Role.CLINICIAN), ("bench-reviewer", Role.REVIEWER)):
        password = secrets.token_urlsafe(16)
        user = User.objects.filter(username=username).first()
        if user is None:
            user, _ = user_create(username=username, role=role, teams=TEAMS, password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
            user.teams.set([Team.objects.get_or_create(name=name)[0] for name in TEAMS])
        if role == Role.REVIEWER and not TOTPDevice.objects.filter(user=user).exists():
            TOTPDevice.objects.create(user=user, name="benchmark", confirmed=True)
        accounts[role] = (username, password)
    return accounts


def cases_ready(count: int, reviewer: str) -> int:
    """Seed until the benchmark teams hold ``count`` cases; the number seeded now."""
    from django.core.management import call_command

    from cases.models import Case

    have = Case.objects.filter(team__name__in=TEAMS).count()
    if have >= count:
        return 0
    args = [str(count - have), "--reviewer", reviewer, "--seed", str(have)]
    for team in TEAMS:
        args += ["--team", team]
    call_command("seed_demo_cases", *args)
    return count - have


def search_term() -> str:
    """Part of a seeded identifier in the middle of the list: a search that finds a few."""
    from cases.models import Patient

    identifiers = Patient.objects.filter(team__name__in=TEAMS).order_by("pk")
    middle = identifiers.values_list("identifier", flat=True)[identifiers.count() // 2]
    return middle[-5:]


def totp_now(username: str) -> str:
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    token = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    return f"{token:0{device.digits}d}"


def sign_in(base: str, username: str, password: str, *, second_factor: bool) -> requests.Session:
    """A browser's session, through the login form (and the code form for a reviewer)."""
    session = requests.Session()
    session.get(f"{base}/login/", timeout=60).raise_for_status()
    answer = session.post(
        f"{base}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=60,
    )
    answer.raise_for_status()
    if second_factor:
        if "/login/verify/" not in answer.url:
            raise SystemExit(f"{username}: the login did not ask for a code ({answer.url})")
        answer = session.post(
            answer.url,
            data={"code": totp_now(username), "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            timeout=60,
        )
        answer.raise_for_status()
    if "/login/" in answer.url:
        raise SystemExit(f"{username}: could not sign in ({answer.url})")
    return session


def gunicorn_start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    address = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leukweb.wsgi", "--workers", "3", "--bind", address],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn stopped: {log.read_text()[-2000:]}")
        try:
            requests.get(f"http://{address}/login/", timeout=30)
            return process
        except requests.RequestException:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("gunicorn did not answer within 120 s")


def measure(session: requests.Session, url: str, *, warmup: int, count: int) -> dict[str, float]:
    for _ in range(warmup):
        session.get(url, timeout=60).raise_for_status()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(url, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        if "/login/" in answer.url:
            raise SystemExit(f"{url}: the session ended ({answer.url})")
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "max_ms": round(max(times), 1),
    }


def table(rows: list[dict]) -> str:
    lines = ["| page | role | p50 ms | p95 ms | max ms |", "|---|---|---:|---:|---:|"]
    for row in rows:
        p95 = f"{row['p95_ms']:.0f}"
        if row["p95_ms"] >= TARGET_P95_MS:
            p95 = f"**{p95}**"
        lines.append(
            f"| {row['page']} | {row['role']} | {row['p50_ms']:.0f} | {p95} | {row['max_ms']:.0f} |"
        )
    return "\n".join(lines)


def markdown(runs: dict[str, dict]) -> str:
    parts = [
        "## Pages at scale",
        "",
        "Written by `python -m benchmarks.pages` (DATABASE_URL: a throwaway PostgreSQL "
        "database). Through gunicorn (DEBUG=False, 3 workers, as docker-compose.yml runs "
        "it) on PostgreSQL, one request at a time after a warm-up, signed in through the "
        "real login (the reviewer with a TOTP code). The clinician and the reviewer are "
        "both in the two seeded teams, so each sees every case. Target: p95 under "
        f"{TARGET_P95_MS:.0f} ms for every page (a p95 at or over it is **bold**). The "
        "machine is shared with other builds: the load average is given with each run, "
        "and the figures are conservative; the account page, which lists nothing, is the "
        "floor that the machine alone sets.",
    ]
    for name in ("before", "after"):
        run = runs.get(name)
        if not run:
            continue
        parts += [
            "",
            f"### {name.capitalize()}: code {run['revision']}",
            "",
            f"{run['measured']}, {run['cases']:,} cases ({run['seeded']}), "
            f"{run['requests']} requests per page after {run['warmup']} of warm-up; "
            f"load average {run['load_average'][0]:.1f} at the start and "
            f"{run['load_average_end'][0]:.1f} at the end ({run['machine']}).",
            "",
            table(run["rows"]),
        ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    # Enough for each of the 3 workers to have served every page once (templates compiled).
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--record", choices=["before", "after"], default="after")
    parser.add_argument("--var-dir", type=Path, default=ROOT / "var" / "bench-pages")
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks.json")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a throwaway PostgreSQL database")
    load = os.getloadavg()
    env = configure(args.var_dir.resolve())

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    model_version_ready()
    accounts = users_ready()
    started = time.monotonic()
    seeded = cases_ready(args.cases, accounts["reviewer"][0])
    seed_note = f"{seeded:,} seeded in {time.monotonic() - started:.0f} s" if seeded else "reused"
    print(f"cases: {args.cases:,} ({seed_note}); load average {load[0]:.1f}", flush=True)
    search = search_term()
    # Statistics and visibility maps as autovacuum leaves them soon after a bulk load.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.close()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = args.var_dir / "gunicorn.log"
    server = gunicorn_start(env, port, log)
    rows = []
    try:
        sessions = {
            "clinician": sign_in(base, *accounts["clinician"], second_factor=False),
            "reviewer": sign_in(base, *accounts["reviewer"], second_factor=True),
        }
        for page in pages(search):
            for role, session in sessions.items():
                if page.reviewer_only and role != "reviewer":
                    continue
                figures = measure(
                    session, base + page.path, warmup=args.warmup, count=args.requests
                )
                rows.append({"page": page.name, "path": page.path, "role": role, **figures})
                print(
                    f"{page.name:28} {role:10} p50 {figures['p50_ms']:7.1f} ms  "
                    f"p95 {figures['p95_ms']:7.1f} ms",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    run = {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": git_revision(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}",
        "cases": args.cases,
        "seeded": seed_note,
        "requests": args.requests,
        "warmup": args.warmup,
        "load_average": [round(x, 1) for x in load],
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "target_p95_ms": TARGET_P95_MS,
        "rows": rows,
    }
    runs = json.loads(args.json.read_text()).get("pages", {}) if args.json.exists() else {}
    runs[args.record] = run
    json_section_write(args.json, "pages", runs)
    section_write(args.md, "pages", markdown(runs))
    print()
    print(table(rows))
    print(
        f"\nload average {run['load_average'][0]:.1f} at the start, "
        f"{run['load_average_end'][0]:.1f} at the end (a shared machine: figures are "
        "conservative)"
    )


if __name__ == "__main__":
    main()
