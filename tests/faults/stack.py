"""The production layout as real processes on this machine, private to one test run: a
PostgreSQL cluster (initdb, pg_ctl), a Redis server without persistence, gunicorn, two
analysis workers (ONNX Runtime), a heatmap worker (TensorFlow, on the heatmap queue) and
the sweeper (beat with a worker on the sweep queue), media on a small tmpfs. Each can be
killed, stopped and started again on purpose; nothing shared (the machine's PostgreSQL and
Redis) is touched.

The test process reads the results with plain SQL (psycopg) and talks to the web over
HTTP, as a client and an operator would.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers import REPO_ROOT, free_port

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
PASSWORD = "fault-suite-pw-1"
# The sweeper's queue: the settings' default for the default queue "leukweb".
SWEEP_QUEUE = "leukweb-sweep"
HEATMAP_QUEUE = "heatmaps"
WORKERS = ("w1", "w2", "hm")  # the analysis workers and the heatmap worker


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Process:
    """A command in its own process group (a Celery worker is a parent and its pool child:
    killing the group kills the worker as a whole), with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env = name, command, env
        self.log_path = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.popen is not None
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the whole group: no warm shutdown, no acknowledgement, no clean-up."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def stop(self, grace: float = 15) -> float | None:
        """What `docker compose stop` does: SIGTERM to the main process only (a Celery
        worker's pool child is left to finish its task), SIGKILL to all after the grace.
        Returns the seconds it took to exit, None if it had to be killed."""
        if not self.running:
            return 0.0
        assert self.popen is not None
        told = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self.signal(signal.SIGKILL)  # anything of its group left behind
        return time.monotonic() - told

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def said_since(self, offset: int, words: str) -> bool:
        if not self.log_path.exists():
            return False
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return words.encode() in log.read()

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ---\n{text[-chars:]}"


class Postgres:
    """A private cluster on a free port, owned by the postgres system user (initdb refuses
    to run as root)."""

    def __init__(self, root: Path, logs: Path) -> None:
        if not PG_BIN:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(PG_BIN[-1])
        self.dir = root
        # Inside its own folder: the postgres user cannot reach the test's temporary ones.
        self.log = root / "postgres.log"
        self.port = free_port()

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}\n{log}")
        return done

    def init(self) -> None:
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self.start()
        self._as_postgres(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "leukweb"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options,
            "-l", str(self.log), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: every connection is cut, as when the database host goes away."""
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop",
            check=False,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/leukweb"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="leukweb", autocommit=True
        )


class Redis(Process):
    """A private Redis that keeps nothing on disk: a restart loses every message."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(logs),
        ]  # fmt: skip
        super().__init__("redis", command, dict(os.environ), logs)

    def start(self) -> Redis:
        super().start()
        wait_until(self._pong, timeout=20, what="redis")
        return self

    def _pong(self) -> bool:
        probe = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return probe.stdout.strip() == "PONG"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class Response:
    status: int
    body: dict


class Client:
    """An API client of the running web: JSON in and out, multipart for images, and any
    connection failure (the web is down) as status 0."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def login(self, username: str, password: str) -> None:
        credentials = {"username": username, "password": password}
        response = self.call("POST", "/api/auth/token/", credentials)
        assert response.status == 200, response
        self.token = response.body["token"]

    def call(
        self, method: str, path: str, data: dict | None = None, *, file: bytes | None = None
    ) -> Response:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        body = None
        if file is not None:
            boundary = uuid.uuid4().hex
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="smear.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
                ).encode()
                + file
                + f"\r\n--{boundary}--\r\n".encode()
            )
        elif data is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(data).encode()
        # Always http://127.0.0.1:<port> of the stack's own web server.
        request = urllib.request.Request(self.base + path, body, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                return Response(answer.status, _parsed(answer.read()))
        except urllib.error.HTTPError as error:
            return Response(error.code, _parsed(error.read()))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            return Response(0, {"error": str(error)})


def _parsed(payload: bytes) -> dict:
    """A JSON answer, or the start of a page (a login form, an error page)."""
    try:
        return json.loads(payload or b"{}")
    except ValueError:
        return {"page": payload[:300].decode(errors="replace")}


@dataclass
class Stack:
    """Everything one fault run needs; ``up()`` builds it, ``down()`` removes it."""

    root: Path
    media: Path
    artifacts: dict[str, Path]
    heatmaps: bool = True
    web_workers: int = 2
    logs: Path = field(init=False)
    postgres: Postgres = field(init=False)
    redis: Redis = field(init=False)
    web_port: int = field(init=False)
    apps: dict[str, Process] = field(init=False, default_factory=dict)
    _log_offsets: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        pg_dir = Path(tempfile.mkdtemp(prefix="leukweb-faults-pg-", dir="/tmp"))
        self.postgres = Postgres(pg_dir, self.logs)
        self.redis = Redis(self.logs)
        self.web_port = free_port()

    # --- the environment every app process gets ------------------------------------

    def env(self) -> dict[str, str]:
        keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            DJANGO_SETTINGS_MODULE="leukweb.settings",
            DEBUG="False",
            SECRET_KEY="fault-suite-secret-key-0123456789-abcdefghij",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # Plain HTTP on loopback: no redirect to https://, no secure cookies.
            HTTPS="False",
            SECURE_COOKIES="False",
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            MEDIA_ROOT=str(self.media),
            MODELS_ROOT=str(self.root / "models"),
            VAR_DIR=str(self.root / "var"),
            STATIC_ROOT=str(self.root / "static"),
            INFERENCE_HEATMAPS=str(self.heatmaps),
            # Room for the small tmpfs the media lives on; /healthz still reports it.
            STORAGE_MIN_FREE_MB="1",
            # One clinician uploads for a whole ward here: faults are tested, not rates.
            API_THROTTLE_WRITES="100000/minute",
            API_THROTTLE_UPLOADS="100000/minute",
            PYTHONUNBUFFERED="1",
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        return env

    def manage(self, code: str, *, timeout: float = 180) -> str:
        """Run Python in a fresh `manage.py shell` of this stack (an operator's console)."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # --- the app processes -------------------------------------------------------

    def _worker(self, name: str, queue: str = "leukweb") -> Process:
        command = [
            sys.executable, "-m", "celery", "-A", "leukweb", "worker", "-Q", queue,
            "--concurrency=1", "-n", f"{name}@faults", "--without-mingle", "--without-gossip",
            "--loglevel=INFO",
        ]  # fmt: skip
        return Process(name, command, self.env(), self.logs)

    def _processes(self) -> dict[str, Process]:
        web = [
            sys.executable, "-m", "gunicorn", "leukweb.wsgi", "--bind",
            f"127.0.0.1:{self.web_port}", "--workers", str(self.web_workers), "--timeout", "60",
        ]  # fmt: skip
        sweeper = [
            sys.executable, "-m", "celery", "-A", "leukweb", "worker", "--beat", "-Q",
            SWEEP_QUEUE, "--concurrency=1", "-n", "sweeper@faults", "--without-mingle",
            "--without-gossip", "--loglevel=INFO",
            f"--schedule={self.root / 'var' / 'celerybeat-schedule'}",
        ]  # fmt: skip
        return {
            "web": Process("web", web, self.env(), self.logs),
            "w1": self._worker("w1"),
            "w2": self._worker("w2"),
            "hm": self._worker("hm", HEATMAP_QUEUE),
            "sweeper": Process("sweeper", sweeper, self.env(), self.logs),
        }

    def up(self) -> None:
        (self.root / "var").mkdir()
        self.postgres.init()
        self.redis.start()
        # What the Docker image and its migrate service do before the web starts.
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v", "0"]):
            done = subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=REPO_ROOT,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        # Every artifact is imported; the first is deployed.
        imports = "".join(
            f"versions.append(model_version_import(source='{path}'))\n"
            for path in self.artifacts.values()
        )
        self.manage(
            "from accounts.services import user_create\n"
            "from inference.services.registry import model_version_deploy, model_version_import\n"
            "user_create(username='alice', role='clinician', teams=['Ward'], "
            f"password='{PASSWORD}')\n"
            "versions = []\n"
            + imports
            + "model_version_deploy(model_version=versions[0], actor=None, reason='stack')\n"
        )
        self.apps = self._processes()
        self.start_apps()

    def start_apps(self, *names: str) -> None:
        for name in names or self.apps:
            if not self.apps[name].running:
                self.start(name)
        self.wait_ready(*names)

    def start(self, name: str) -> None:
        """Start one app process; wait_ready then waits for this start's readiness."""
        self._log_offsets[name] = self.apps[name].log_size()
        self.apps[name].start()

    def wait_ready(self, *names: str) -> None:
        names = names or tuple(self.apps)
        if "web" in names:
            wait_until(self._web_answers, timeout=90, what="the web server")
        workers = [f"{name}@faults" for name in names if name in ("w1", "w2")]
        if workers:
            wait_until(lambda: self.live_workers() >= set(workers), timeout=120, what=str(workers))
        if "hm" in names:  # no heartbeat: it takes no analyses; its log says when it listens
            offset = self._log_offsets.get("hm", 0)
            wait_until(
                lambda: self.apps["hm"].said_since(offset, "hm@faults ready."),
                timeout=120,
                what="the heatmap worker",
            )

    def _web_answers(self) -> bool:
        return Client(self.base).call("GET", "/login/").status == 200

    def live_workers(self) -> set[str]:
        """Workers whose heartbeat is fresh, as /healthz counts them (by the database)."""
        try:
            rows = self.sql(
                "SELECT hostname FROM inference_workerheartbeat "
                "WHERE last_seen > now() - interval '15 seconds'"
            )
        except psycopg.OperationalError:
            return set()
        return {row[0] for row in rows}

    def down(self) -> None:
        for process in self.apps.values():
            process.kill()
        self.redis.kill()
        self.postgres.stop()
        shutil.rmtree(self.postgres.dir, ignore_errors=True)

    # --- reading the results --------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def client(self) -> Client:
        client = Client(self.base)
        client.login("alice", PASSWORD)
        return client

    def sql(self, query: str, *params: Any) -> list[tuple]:
        with self.postgres.connect() as conn:
            return list(conn.execute(query, params).fetchall())

    def healthz(self) -> dict:
        return Client(self.base).call("GET", "/healthz").body

    def logs_tail(self) -> str:
        return "\n".join(p.tail() for p in [*self.apps.values(), self.redis])
