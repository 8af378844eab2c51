"""A real S3-protocol server for tests (moto's standalone server, on loopback), and a TCP
relay in front of it that a test can cut and restore to make the store unreachable.

Importing this module needs no Django: the two-host test's helpers use it too.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from tests.helpers import free_port

# moto accepts any credentials; these only have to look like keys.
ACCESS_KEY = "leukweb-test-access"
SECRET_KEY = "leukweb-test-secret-key"
REGION = "eu-west-1"


@dataclass
class MotoServer:
    """moto's standalone S3-protocol server in a process of its own."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, log_path: Path, *, timeout: float = 30) -> MotoServer:
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not _listening(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def s3_client(endpoint_url: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def bucket_create(endpoint_url: str, name: str | None = None) -> str:
    name = name or f"leukweb-test-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint_url).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return name


def bucket_keys(endpoint_url: str, bucket: str) -> list[str]:
    pages = s3_client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def storage_env(endpoint_url: str, bucket: str, *, prefix: str = "") -> dict[str, str]:
    """The environment that points a process's media and models at the store."""
    return {
        "MEDIA_STORAGE": "s3",
        "MODELS_STORAGE": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": endpoint_url,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_PREFIX": prefix,
    }


class TcpRelay:
    """Forwards connections from (listen_host, listen_port) to a target, until cut.

    ``cut()`` closes the listening socket and every open connection, so the store looks
    unreachable (connection refused) even to a client with pooled keep-alive connections;
    ``restore()`` listens again on the same address.
    """

    def __init__(self, target: tuple[str, int], *, listen: tuple[str, int] | None = None) -> None:
        self.target = target
        self.address = listen or ("127.0.0.1", free_port())
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def restore(self) -> TcpRelay:
        listener = socket.create_server(self.address, reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            doomed = [*self._sockets, *([self._listener] if self._listener else [])]
            self._sockets.clear()
            self._listener = None
        for sock in doomed:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)
            source.close()


@dataclass
class ObjectStore:
    """What a test sees of its store: the bucket, the relay it is reached through, and the
    server's own address (for checking objects behind the application's back)."""

    bucket: str
    relay: TcpRelay
    server_url: str

    def objects(self) -> list[str]:
        return bucket_keys(self.server_url, self.bucket)

    def client(self):
        return s3_client(self.server_url)


@contextmanager
def object_store_open(
    server: MotoServer, settings, monkeypatch, *, bucket: str | None = None
) -> Iterator[ObjectStore]:
    """Point the test's media and models storages at a bucket (a new one unless named),
    the way the settings module does from the environment."""
    from leukweb.settings import file_storage

    relay = TcpRelay((server.host, server.port)).restore()
    store = ObjectStore(bucket or bucket_create(server.url), relay, server.url)
    for name, value in storage_env(relay.url, store.bucket).items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": file_storage("media", root=Path("unused")),
        "models": file_storage("models", root=Path("unused")),
    }
    try:
        yield store
    finally:
        relay.cut()
