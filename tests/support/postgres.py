"""A throwaway PostgreSQL server for tests: Debian's (or any installed) server binaries, a fresh data
directory, 127.0.0.1 on a free port, trust authentication, stopped and deleted afterwards.

The server refuses to run as root, so as root its commands run as the `postgres` user (`runuser`) in
a directory that user owns. Dagster reaches it through `deploy/dagster.yaml`, the prod profile's
instance settings, with the DAGSTER_PG_* variables `env()` returns.

Import the fixture into a test module: `from tests.support.postgres import postgres  # noqa: F401`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3 import free_port

USER = "dagster"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    on_path = shutil.which("initdb")
    if found:
        return Path(found[-1]).parent
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """One server process; `restart()` keeps its data (what a database failover looks like to a client)."""

    def __init__(self, binaries: Path):
        self.bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="dataset-assets-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        # The server outlives the test that (re)starts it: it must not carry that test's Dagster home, by
        # which the daemon and UI fixtures find their orphans to kill.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return name

    def env(self, database: str) -> dict[str, str]:
        """What deploy/dagster.yaml reads for its `storage: postgres` section."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": USER,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": database,
        }

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def require_binaries() -> Path:
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries not found: apt-get install postgresql (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the Postgres tests must run, never skip
        pytest.skip(message)
    return binaries


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer(require_binaries())
    server.start()
    try:
        yield server
    finally:
        server.remove()


def prod_instance_env(home: Path, server: PostgresServer, database: str) -> dict[str, str]:
    """A Dagster home holding the prod profile's own `deploy/dagster.yaml` (copied as it is), and the
    variables it reads: the Postgres server's database; a compute log bucket (the S3 compute log
    manager is built when the instance loads; its uploads need an S3, which the daemon drill gives it)."""
    from tests.conftest import ROOT

    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        **server.env(server.create_database(database)),
        "DAGSTER_COMPUTE_LOG_BUCKET": "compute-logs",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
