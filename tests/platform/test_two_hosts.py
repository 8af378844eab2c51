"""Two hosts that share nothing but the services: a web server (gunicorn) and a Celery
worker, each with its own VAR_DIR and no common folder, talking to PostgreSQL, Redis and a
real S3-protocol server (moto's, on loopback). The worker runs in a network namespace of
its own where the machine allows it (tests/hosts.py), reaching the services only through
relays on its link, so nothing local can be shared by accident.

The whole path is driven over HTTP, as a clinician and a reviewer would: upload, the
worker's prediction and heatmap, download. Then the worker loses the store mid-analysis,
retries, and finishes once the store is back.
"""

from __future__ import annotations

import http.cookies
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from cases.models import Case, SmearImage
from inference.models import Prediction
from inference.services.registry import model_version_deploy, model_version_import
from tests.helpers import free_port, smear_bytes
from tests.hosts import Namespace, namespace_unavailable, network_namespace
from tests.objectstore import MotoServer, TcpRelay, bucket_create, object_store_open, storage_env
from tests.worker import WorkerProcess, running_worker, worker_env

SERVICES_CONFIGURED = settings.DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
) and settings.CELERY_BROKER_URL.startswith("redis://")

pytestmark = [
    pytest.mark.skipif(
        not SERVICES_CONFIGURED,
        reason="two hosts share PostgreSQL and Redis: set DATABASE_URL=postgres://... and "
        "REDIS_URL=redis://... (as .ci/run does)",
    ),
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def _moved(url: str, host: str, port: int) -> str:
    """The same service URL, reached at another address."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}"))


@dataclass
class WebHost:
    """The web server, and the HTTP a browser would send it."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def request(
        self, path: str, *, session: str, data: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        # Always the http:// URL of the server this fixture started.
        request = urllib.request.Request(  # noqa: S310
            self.url + path,
            data=data,
            headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def upload_case(self, *, session: str, team: int, identifier: str, images) -> int:
        """Open and submit a case through the new-case form; the new case's id."""
        status, headers, _ = self.request("/cases/new/", session=session)
        assert status == 200, self.log_path.read_text()[-3000:]
        cookie = http.cookies.SimpleCookie(headers["Set-Cookie"])
        csrf = cookie[settings.CSRF_COOKIE_NAME].value
        body = encode_multipart(
            BOUNDARY,
            {
                "csrfmiddlewaretoken": csrf,
                "identifier": identifier,
                "team": team,
                "sex": "U",
                "specimen": "peripheral_blood",
                "stain": "wright_giemsa",
                "images": [SimpleUploadedFile(name, data) for name, data in images],
                "submit": "on",
            },
        )
        status, _, answer = self.request(
            "/cases/new/",
            session=f"{session}; {settings.CSRF_COOKIE_NAME}={csrf}",
            data=body,
            headers={"Content-Type": MULTIPART_CONTENT, "Accept": "application/json"},
        )
        assert status == 200, answer.decode(errors="replace")[-3000:]
        assert answer.startswith(b"{"), answer.decode(errors="replace")[-3000:]
        return int(json.loads(answer)["redirect"].strip("/").split("/")[-1])


@dataclass
class TwoHosts:
    bucket: str
    store_url: str
    web: WebHost
    web_var: Path
    worker: WorkerProcess
    worker_var: Path
    # The worker's way to the store; cut it and the worker alone loses the store.
    worker_store: TcpRelay
    namespace: Namespace | None


def _web_start(env: dict[str, str], log_path: Path) -> WebHost:
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "leukweb.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--access-logfile", "-", "--no-control-socket"],
            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    web = WebHost(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not start:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(web.url + "/login/", timeout=2)  # noqa: S310
            return web
        except urllib.error.HTTPError:
            return web
        except OSError:
            time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def two_hosts(moto_server: MotoServer, django_db_setup, tmp_path_factory) -> Iterator[TwoHosts]:
    root = tmp_path_factory.mktemp("two-hosts")
    web_var, worker_var = root / "web-var", root / "worker-var"
    bucket = bucket_create(moto_server.url)
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}"
        f"@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    broker = urlsplit(settings.CELERY_BROKER_URL)
    with ExitStack() as stack:
        reason = namespace_unavailable()
        namespace = None
        if reason is None:
            namespace = stack.enter_context(network_namespace())
        else:
            warnings.warn(f"the worker shares this network: {reason}", stacklevel=1)
        # What the worker reaches, and where: PostgreSQL, Redis and the store, each relayed
        # onto the worker's link (or onto this machine's loopback, without a namespace).
        link = namespace.host_address if namespace else "127.0.0.1"

        def relay(host: str, port: int) -> TcpRelay:
            listen = (link, port) if namespace else ("127.0.0.1", free_port())
            made = TcpRelay((host, port), listen=listen).restore()
            stack.callback(made.cut)
            return made

        pg = relay(str(db["HOST"] or "127.0.0.1"), int(db["PORT"] or 5432))
        redis = relay(broker.hostname or "127.0.0.1", broker.port or 6379)
        store = relay(moto_server.host, moto_server.port)
        worker_environment = {
            **storage_env(store.url, bucket),
            "VAR_DIR": str(worker_var),
            "MEDIA_ROOT": str(worker_var / "media"),
            "MODELS_ROOT": str(worker_var / "models"),
            "DATABASE_URL": _moved(database_url, *pg.address),
            "CELERY_BROKER_URL": _moved(settings.CELERY_BROKER_URL, *redis.address),
            "CELERY_RESULT_BACKEND": _moved(settings.CELERY_RESULT_BACKEND, *redis.address),
            "REDIS_URL": _moved(settings.CELERY_BROKER_URL, *redis.address),
        }
        web = _web_start(
            worker_env(
                **storage_env(moto_server.url, bucket),
                VAR_DIR=str(web_var),
                MEDIA_ROOT=str(web_var / "media"),
                MODELS_ROOT=str(web_var / "models"),
            ),
            root / "web.log",
        )
        stack.callback(_stop, web.process)
        worker = stack.enter_context(
            running_worker(
                env=worker_environment,
                prefix=namespace.prefix if namespace else (),
                ready_timeout=180,
                # The worker host analyses and makes the heatmaps (its install has both).
                queues=f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.CELERY_HEATMAP_QUEUE}",
            )
        )
        yield TwoHosts(bucket, moto_server.url, web, web_var, worker, worker_var, store, namespace)


@pytest.fixture
def deployed(two_hosts, moto_server, settings, monkeypatch, artifacts):
    """An administrator imports and deploys a model into the same store, from a third host."""
    with object_store_open(moto_server, settings, monkeypatch, bucket=two_hosts.bucket):
        version = model_version_import(source=artifacts["v1"])
        model_version_deploy(model_version=version, actor=None, reason="two hosts")
        yield version


def session_of(client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def wait_for(check, *, what: str, hosts: TwoHosts, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}\n--- worker\n"
                f"{hosts.worker.log_path.read_text()[-4000:]}\n--- web\n"
                f"{hosts.web.log_path.read_text()[-2000:]}"
            )
        time.sleep(0.3)


def all_done(case_id: int) -> bool:
    statuses = set(SmearImage.objects.filter(case_id=case_id).values_list("status", flat=True))
    return statuses == {SmearImage.Status.DONE}


def store_object(hosts: TwoHosts, key: str) -> bytes:
    from tests.objectstore import s3_client

    return s3_client(hosts.store_url).get_object(Bucket=hosts.bucket, Key=key)["Body"].read()


def test_an_upload_on_the_web_host_is_analysed_on_the_worker_host_and_comes_back(
    two_hosts, deployed, client_for, alice, bob
):
    alice_session = session_of(client_for(alice))
    case_id = two_hosts.web.upload_case(
        session=alice_session,
        team=alice.teams.get().pk,
        identifier="TWO-HOSTS-1",
        images=[("smear-1.jpg", smear_bytes(0)), ("smear-2.jpg", smear_bytes(1))],
    )
    wait_for(lambda: all_done(case_id), what="the worker's predictions", hosts=two_hosts)
    wait_for(
        lambda: not Prediction.objects.filter(image__case_id=case_id, heatmap="").exists(),
        what="the heatmaps",
        hosts=two_hosts,
    )

    assert Case.objects.get(pk=case_id).status == Case.Status.ANALYSED
    predictions = list(Prediction.objects.filter(image__case_id=case_id).select_related("image"))
    assert len(predictions) == 2
    # The clinician downloads the uploads, the reviewer the heatmaps: both from the web
    # host, which streams what the worker host read and wrote in the store.
    for prediction in predictions:
        assert prediction.model_version == deployed
        image = prediction.image
        status, _, body = two_hosts.web.request(f"/images/{image.pk}/", session=alice_session)
        assert status == 200 and body == store_object(two_hosts, f"media/{image.file.name}")
    # Logging bob in on the shared test client ends alice's session, so he comes second.
    bob_session = session_of(client_for(bob))
    for prediction in predictions:
        status, headers, body = two_hosts.web.request(
            f"/reviews/predictions/{prediction.pk}/heatmap.png", session=bob_session
        )
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert body == store_object(two_hosts, f"media/{prediction.heatmap.name}")

    # Each host kept only its own: the worker a copy of the model keyed by its content
    # hash; neither has uploads, heatmaps or models in a folder of its own.
    digest = deployed.content_hash.removeprefix("sha256:")
    assert (two_hosts.worker_var / "model-cache" / digest / "manifest.json").is_file()
    assert not (two_hosts.web_var / "model-cache").exists()
    for var in (two_hosts.web_var, two_hosts.worker_var):
        assert not (var / "media").exists() and not (var / "models").exists()


def test_the_worker_host_cannot_reach_this_hosts_services_directly(two_hosts):
    if two_hosts.namespace is None:
        pytest.skip(namespace_unavailable() or "no network namespace")
    redis = urlsplit(settings.CELERY_BROKER_URL)
    probe = subprocess.run(
        [*two_hosts.namespace.prefix, sys.executable, "-c",
         "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)",
         redis.hostname or "127.0.0.1", str(redis.port or 6379)],
        capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert probe.returncode != 0 and "Connection refused" in probe.stderr


def test_a_worker_cut_off_from_the_store_retries_and_finishes_once_it_is_back(
    two_hosts, deployed, client_for, alice
):
    two_hosts.worker_store.cut()
    log_before = len(two_hosts.worker.log_path.read_text())
    try:
        # The web host still reaches the store: the upload is kept.
        case_id = two_hosts.web.upload_case(
            session=session_of(client_for(alice)),
            team=alice.teams.get().pk,
            identifier="TWO-HOSTS-2",
            images=[("smear-3.jpg", smear_bytes(2))],
        )
        wait_for(
            lambda: "ObjectStoreError" in two_hosts.worker.log_path.read_text()[log_before:],
            what="the worker to retry",
            hosts=two_hosts,
        )
        assert not SmearImage.objects.filter(case_id=case_id, status="failed").exists()
    finally:
        two_hosts.worker_store.restore()
    wait_for(lambda: all_done(case_id), what="the analysis after the outage", hosts=two_hosts)
    log = two_hosts.worker.log_path.read_text()[log_before:]
    assert "retry: Retry in" in log
