"""Dagster on PostgreSQL through the prod profile's `deploy/dagster.yaml`: a real server started for
the tests, `dagster-postgres` with the driver it is written for, the graph run by `dataset-assets
run`, and an unreachable database stopping the run before any step, with the cause and no traceback.
(The daemon drill and the UI test run on Postgres too: tests/e2e/test_daemon.py, test_ui.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from resources.lake import Lake
from tests.conftest import CRAWL, QUALITY, ROOT
from tests.support.postgres import prod_instance_env
from tests.support.s3 import free_port

SHARDS = ["c4-en-sample-1000.jsonl.gz", "cc-main-2019-30-docs.jsonl.gz"]


def cli(*args, env: dict, timeout: float = 900):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_graph_runs_on_postgres_through_the_prod_instance_settings(tmp_path, postgres):
    env = prod_instance_env(tmp_path / "home", postgres, "cli_run")
    env["QUALITY_REFERENCE"] = str(QUALITY)
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    for name in SHARDS:
        shutil.copy(CRAWL / name, landing / name)
    done = cli(
        "run",
        "--landing",
        str(landing),
        "--lake",
        str(lake_dir),
        "--select",
        "crawl_docs,quality_classifier,seeds",
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "syntax error" not in done.stderr
    assert len([line for line in done.stdout.splitlines() if line.startswith("ok")]) == 2 + 1 + 2, done.stdout

    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    try:
        instance = DagsterInstance.from_config(str(tmp_path / "home"))
    finally:
        for k in [k for k in os.environ if k.startswith("DAGSTER_PG_")]:
            del os.environ[k]
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = instance.get_runs()
        assert len(runs) == 5 and all(r.status == DagsterRunStatus.SUCCESS for r in runs)
        assert sorted(instance.get_dynamic_partitions("crawl_shards")) == SHARDS
        seeds = instance.fetch_materializations(AssetKey("seeds"), limit=10).records
        assert sorted(r.partition_key for r in seeds) == SHARDS
    finally:
        instance.dispose()
    lake = Lake(root=str(lake_dir))
    assert lake.partition_values("seeds", "shard") == SHARDS

    status = cli("status", "--landing", str(landing), "--lake", str(lake_dir), "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert '"current": 2' in status.stdout


def test_an_unreachable_database_stops_the_run_before_any_step_with_the_cause(tmp_path, postgres):
    env = prod_instance_env(tmp_path / "home", postgres, "unreachable")
    env["DAGSTER_PG_PORT"] = str(free_port())  # nothing listens there
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(CRAWL / SHARDS[1], landing / SHARDS[1])
    done = cli(
        "run",
        "--landing",
        str(landing),
        "--lake",
        str(tmp_path / "lake"),
        "--select",
        "crawl_docs",
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "run stopped before any step: the Dagster instance at" in done.stderr
    assert "cannot reach its database" in done.stderr and "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr and "ok " not in done.stdout
    assert not (tmp_path / "lake" / "crawl_docs").exists()
