"""A local S3 for tests: `moto_server` on 127.0.0.1 in a subprocess, fake credentials in the
environment only, and an outage switch (a TCP relay in front of the server) for fault drills.

Import the fixture into a test module: `from tests.support.s3 import local_s3  # noqa: F401`.

moto keeps its objects in memory, so a killed server forgets them. The relay lets a drill cut the
endpoint the code under test talks to (connections reset, new ones refused) while the server
behind it keeps its state, the way a real S3 outage keeps objects: the test can then look at
exactly what the failed run left behind and let a retry continue from it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

REGION = "us-east-1"
BUCKET = "bucket"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_credentials() -> dict[str, str]:
    """Values moto accepts; the secret is unique so a leak is found by searching for it."""
    return {
        "AWS_ACCESS_KEY_ID": "testing-key-" + secrets.token_hex(4),
        "AWS_SECRET_ACCESS_KEY": "moto-secret-" + secrets.token_hex(16),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # Never fall back to a developer's real profile, config file or the EC2 metadata service.
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _moto_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    return [*base, "-H", "127.0.0.1", "-p", str(port)]


class MotoServer:
    """One `moto_server` process in its own process group, restartable on the same port."""

    def __init__(self, log_dir: Path, port: Optional[int] = None):
        self.port = port or free_port()
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "MotoServer":
        log = open(self.log_path, "ab")
        # moto's request recorder (the status test counts requests with it) writes beside the log.
        env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(self.log_path.with_suffix(".recording"))}
        self.proc = subprocess.Popen(
            _moto_command(self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with {self.proc.returncode}; log "
                    f"{self.log_path}:\n{self.log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.url} within {timeout:.0f} s; log {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crashed endpoint: in-flight requests are cut, the in-memory objects are gone."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, grace=5.0)

    def _signal(self, sig: int, grace: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(grace)


class Relay:
    """A TCP relay 127.0.0.1:<port> -> target. `cut()` refuses new connections and resets open
    ones (the endpoint is gone); `restore()` listens on the same port again."""

    def __init__(self, target_port: int, port: Optional[int] = None):
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: Optional[socket.socket] = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._listener is not None

    def restore(self) -> "Relay":
        if self._listener is not None:
            return self
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"relay-{self.port}").start()
        return self

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._sockets = self._sockets, set()
        if listener is not None:
            _close(listener)
        for s in open_sockets:
            try:  # RST rather than FIN: the peer sees a reset connection, not a clean end of response
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            _close(s)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
            done = [0]  # directions finished; both sockets close when both are
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, done), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, done: list[int]) -> None:
        failed = False
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            failed = True
        with self._lock:
            done[0] += 1
            finished = failed or done[0] == 2
            if finished:
                self._sockets.discard(src)
                self._sockets.discard(dst)
        if finished:
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    """Shut down first: that wakes a thread blocked in recv() on it, which close() alone may not."""
    for step in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
        try:
            step()
        except OSError:
            pass


class LocalS3:
    """What the fixture yields: the endpoint URL, the bucket, credentials as set in the environment,
    a boto3 client straight to moto, and the relay for outage drills."""

    def __init__(self, server: MotoServer, relay: Relay, credentials: dict[str, str], bucket: str = BUCKET):
        self.server, self.relay, self.credentials, self.bucket = server, relay, credentials, bucket

    @property
    def url(self) -> str:
        """The endpoint to give the code under test (S3_ENDPOINT_URL): moto itself."""
        return self.server.url

    @property
    def relay_url(self) -> str:
        """The same server behind the outage switch (`relay.cut()` / `relay.restore()`)."""
        return self.relay.url

    @property
    def secret(self) -> str:
        return self.credentials["AWS_SECRET_ACCESS_KEY"]

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.server.url,
            region_name=REGION,
            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def upload(self, local: Path, key: str, bucket: Optional[str] = None) -> str:
        self.client().upload_file(str(local), bucket or self.bucket, key)
        return key

    def objects(self, prefix: str = "", bucket: Optional[str] = None) -> dict[str, int]:
        """Key -> size of every object under `prefix` (directory markers included, as keys ending in /)."""
        found: dict[str, int] = {}
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket, Prefix=prefix)
        for page in pages:
            found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return found

    def get(self, key: str, bucket: Optional[str] = None) -> bytes:
        return self.client().get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ plus the endpoint and the fake credentials, for a subprocess."""
        return {**os.environ, **self.credentials, "S3_ENDPOINT_URL": self.url, **extra}


@pytest.fixture(scope="module")
def local_s3(tmp_path_factory) -> Iterator[LocalS3]:
    """moto_server on a free port with bucket `bucket`, fake AWS_* credentials in the environment
    for the module's duration; the server and the relay are stopped afterwards, even on failure."""
    pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra)")
    pytest.importorskip("boto3", reason="needs boto3 (the dev extra)")
    credentials = fake_credentials()
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    relay = Relay(server.port)
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ):
            mp.delenv(name, raising=False)
        for name, value in credentials.items():
            mp.setenv(name, value)
        try:
            server.start()
            relay.restore()
            s3 = LocalS3(server, relay, credentials)
            s3.create_bucket(BUCKET)
            yield s3
        finally:
            relay.cut()
            server.stop()
