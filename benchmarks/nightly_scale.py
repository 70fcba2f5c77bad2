"""One tick of the nightly backfill sensor at N registered shards, with the status catalog of
`status_scale.py`: everything built (the tick finds nothing to do) and nothing built (the tick
builds a backfill of every partition). Each case runs in its own process on a temporary Dagster
instance, so peak memory is that tick's own: SQLite, or with `--storage postgres` the storage section
of the prod profile's deploy/dagster.yaml on a fresh database of a throwaway PostgreSQL server that
the benchmark starts (Debian's server binaries; see tests/support/postgres.py).

    python benchmarks/nightly_scale.py [--scales 1000,10000,100000] [--batch-files 1|N|auto] [--storage sqlite|postgres]

Registration of the N shard keys is timed too. The tick is the sensor function itself, evaluated
as the daemon would (a sensor context with the lake and an engine resource). In the nothing-built
case the backfill the tick requested is then stored as the daemon would store it (its serialized
size is the row the backfill daemon rewrites each iteration), and a second tick is timed while that
backfill is unfinished. A landing sensor tick is timed over a landing folder of N empty shard files,
and the backfill daemon's first iteration over the nightly backfill of an empty lake (runs created
and queued, the code location loaded in process).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def instance_at(home: str, queued: bool = False):
    """A Dagster instance in `home`: SQLite, or (BENCH_PG_PORT set by --storage postgres) the prod
    profile's storage section on a database of its own."""
    import os
    import uuid

    import yaml
    from dagster import DagsterInstance

    config: dict = {"telemetry": {"enabled": False}}
    if queued:  # runs are created and queued, as the daemon does
        config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    if os.environ.get("BENCH_PG_PORT"):
        import psycopg2

        database = f"bench_{uuid.uuid4().hex[:10]}"
        connection = psycopg2.connect(
            host="127.0.0.1", port=os.environ["BENCH_PG_PORT"], user="dagster", dbname="postgres"
        )
        connection.autocommit = True
        connection.cursor().execute(f"CREATE DATABASE {database}")
        connection.close()
        os.environ["DAGSTER_PG_DB"] = database
        config["storage"] = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["storage"]
    Path(home, "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(home)


def one(n: int, built: bool) -> dict:
    from dagster import build_sensor_context

    from benchmarks.status_scale import _child, partition_keys
    from dataset_assets.definitions import defs
    from dataset_assets.defs.nightly import nightly_backfill
    from resources.lake import Lake
    from tests.support.engines import ScriptedEngine

    engine = ScriptedEngine()
    with tempfile.TemporaryDirectory() as root, tempfile.TemporaryDirectory() as home:
        lake = Lake(root=root)
        # The catalog is written by another process (status_scale's builder), so this process's
        # peak memory is the tick's own.
        _child("--build", str(n), "1" if built else "0", root, engine.generator)
        shards = partition_keys(n)
        instance = instance_at(home)
        start = time.perf_counter()
        instance.add_dynamic_partitions("crawl_shards", shards)
        register_s = time.perf_counter() - start
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with build_sensor_context(
            instance=instance,
            resources={"lake": lake, "engine": engine},
            repository_def=defs.get_repository_def(),
            cursor="0",
        ) as context:
            start = time.perf_counter()
            result = nightly_backfill(context)
            tick_s = time.perf_counter() - start
        requested = (
            sum(1 for _ in result.run_requests[0].asset_graph_subset.iterate_asset_partitions())
            if result.run_requests
            else 0
        )
        extra = _while_unfinished(instance, lake, engine, defs, nightly_backfill, result) if result.run_requests else {}
        return {
            **extra,
            "shards": n,
            "case": "everything built" if built else "nothing built",
            "register_s": round(register_s, 2),
            "tick_s": round(tick_s, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_tick_mib": round(base, 1),
            "partitions_requested": requested,
            "skip_reason": result.skip_reason.skip_message if result.skip_reason else None,
        }


def _while_unfinished(instance, lake, engine, defs, nightly_backfill, result) -> dict:
    """Store the requested backfill as the sensor daemon would, then tick again with it unfinished."""
    from dagster import build_sensor_context
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._serdes import serialize_value

    request = result.run_requests[0]
    backfill = PartitionBackfill.from_asset_graph_subset(
        "bench", time.time(), dict(request.tags), instance, request.asset_graph_subset, None, None, None
    )
    instance.add_backfill(backfill)
    with build_sensor_context(
        instance=instance,
        resources={"lake": lake, "engine": engine},
        repository_def=defs.get_repository_def(),
        cursor=result.cursor,
    ) as context:
        start = time.perf_counter()
        again = nightly_backfill(context)
        waiting_s = time.perf_counter() - start
    return {
        "backfill_row_bytes": len(serialize_value(backfill)),
        "tick_while_unfinished_s": round(waiting_s, 3),
        "cursor_keeps_more": (result.cursor or "").endswith("+more"),
        "launched_while_unfinished": len(again.run_requests or []),
    }


def landing(n: int) -> dict:
    """One crawl_landing_sensor tick over a landing folder of n new shard files."""
    from dagster import build_sensor_context

    from dataset_assets import settings
    from dataset_assets.defs.crawl import crawl_landing_sensor
    from resources.lake import Lake
    from resources.landing import CrawlLanding

    with (
        tempfile.TemporaryDirectory() as folder,
        tempfile.TemporaryDirectory() as home,
        tempfile.TemporaryDirectory() as lake,
    ):
        for i in range(n):
            Path(folder, f"CC-MAIN-2026-44-{i:06d}.warc.gz").touch()
        instance = instance_at(home)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with build_sensor_context(
            instance=instance, resources={"landing": CrawlLanding(location=folder), "lake": Lake(root=lake)}
        ) as context:
            start = time.perf_counter()
            result = crawl_landing_sensor(context)
            tick_s = time.perf_counter() - start
        return {
            "shards": n,
            "case": "landing tick",
            "tick_s": round(tick_s, 2),
            "partitions_registered": len(result.run_requests),
            "batch": settings.landing_batch(),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_tick_mib": round(base, 1),
        }


def backfill_iteration(n: int) -> dict:
    """The backfill daemon's first iteration over the nightly backfill of an empty lake of n shards:
    an instance with a queued run coordinator (runs are created and queued, as the daemon does) and
    the code location loaded in process."""
    import logging
    import os

    root, home = tempfile.mkdtemp(), tempfile.mkdtemp()
    os.environ.update(DATASET_LAKE=root, DAGSTER_HOME=home)
    from dagster import build_sensor_context
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    from benchmarks.status_scale import _child, partition_keys
    from dataset_assets.definitions import defs
    from dataset_assets.defs.nightly import nightly_backfill
    from resources.lake import Lake
    from tests.support.engines import ScriptedEngine

    _child("--build", str(n), "0", root)  # an empty catalog, and the batch registry when batches are on
    instance = instance_at(home, queued=True)
    instance.add_dynamic_partitions("crawl_shards", partition_keys(n))
    with build_sensor_context(
        instance=instance,
        resources={"lake": Lake(root=root), "engine": ScriptedEngine()},
        repository_def=defs.get_repository_def(),
        cursor="0",
    ) as context:
        request = nightly_backfill(context).run_requests[0]
    backfill = PartitionBackfill.from_asset_graph_subset(
        "bench", time.time(), dict(request.tags), instance, request.asset_graph_subset, None, None, None
    )
    instance.add_backfill(backfill)
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="dataset_assets.definitions", working_directory=str(Path(__file__).resolve().parents[1])
        ),
        location_name="dataset_assets.definitions",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        errors = [e for e in execute_backfill_iteration(workspace, logging.getLogger("backfill")) if e is not None]
        seconds = time.perf_counter() - start
    return {
        "shards": n,
        "case": "backfill daemon, first iteration",
        "iteration_s": round(seconds, 2),
        "backfill_partitions": sum(1 for _ in request.asset_graph_subset.iterate_asset_partitions()),
        "runs_created": len(instance.get_runs()),
        "errors": [str(e)[:300] for e in errors],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mib": round(base, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1000,10000,100000")
    parser.add_argument(
        "--batch-files",
        default="1",
        help="landing files per crawl_shards partition (CRAWL_BATCH_FILES: a number or auto)",
    )
    parser.add_argument(
        "--storage", choices=("sqlite", "postgres"), default="sqlite", help="the Dagster instance's storage"
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, case = int(args.one[0]), args.one[1]
        cases = {"landing": landing, "backfill": backfill_iteration}
        print(json.dumps(cases[case](n) if case in cases else one(n, case == "1")))
        return 0
    from benchmarks.status_scale import batch_option

    name = batch_option(parser, args, "nightly_scale") + ("_postgres" if args.storage == "postgres" else "")
    server = _postgres() if args.storage == "postgres" else None
    try:
        runs = [dict(r, storage=args.storage) for r in _cases(args.scales)]
    finally:
        if server is not None:
            server.remove()
    command = (
        f"python benchmarks/nightly_scale.py --scales {args.scales} --batch-files {args.batch_files} "
        f"--storage {args.storage}"
    )
    write_result(name, {"runs": runs, "command": command})
    return 0


def _postgres():
    """A throwaway server for the children (BENCH_PG_PORT, DAGSTER_PG_* in the environment they inherit)."""
    import os

    from tests.support.postgres import PostgresServer, server_binaries

    server = PostgresServer(server_binaries())
    server.start()
    os.environ.update(server.env("unused"), BENCH_PG_PORT=str(server.port))
    return server


def _cases(scales: str) -> list[dict]:
    runs = []
    for n in (int(s) for s in scales.split(",")):
        for built in ("landing", "1", "0", "backfill"):
            done = subprocess.run([sys.executable, __file__, "--one", str(n), built], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(result), flush=True)
            runs.append(result)
    return runs


if __name__ == "__main__":
    sys.exit(main())
