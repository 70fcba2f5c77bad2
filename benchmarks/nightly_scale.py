"""One tick of the nightly backfill sensor at N registered shards, with the status catalog of
`status_scale.py`: everything built (the tick finds nothing to do) and nothing built (the tick
builds a backfill of every partition). Each case runs in its own process on a temporary SQLite
Dagster instance, so peak memory is that tick's own.

    python benchmarks/nightly_scale.py [--scales 1000,10000,100000]

Registration of the N shard keys is timed too. The tick is the sensor function itself, evaluated
as the daemon would (a sensor context with the lake and an engine resource). In the nothing-built
case the backfill the tick requested is then stored as the daemon would store it (its serialized
size is the row the backfill daemon rewrites each iteration), and a second tick is timed while that
backfill is unfinished. A landing sensor tick is timed over a landing folder of N empty shard files.
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


def one(n: int, built: bool) -> dict:
    from dagster import DagsterInstance, build_sensor_context

    from benchmarks.status_scale import _child
    from dataset_assets.defs.nightly import nightly_backfill
    from dataset_assets.definitions import defs
    from resources.lake import Lake
    from tests.support.engines import ScriptedEngine

    engine = ScriptedEngine()
    with tempfile.TemporaryDirectory() as root, tempfile.TemporaryDirectory() as home:
        lake = Lake(root=root)
        # The catalog is written by another process (status_scale's builder), so this process's
        # peak memory is the tick's own.
        _child("--build", str(n), "1" if built else "0", root, engine.generator)
        shards = [f"CC-MAIN-2026-44-{i:06d}.warc.gz" for i in range(n)]
        instance = DagsterInstance.local_temp(home)
        start = time.perf_counter()
        instance.add_dynamic_partitions("crawl_shards", shards)
        register_s = time.perf_counter() - start
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with build_sensor_context(instance=instance, resources={"lake": lake, "engine": engine},
                                  repository_def=defs.get_repository_def(), cursor="0") as context:
            start = time.perf_counter()
            result = nightly_backfill(context)
            tick_s = time.perf_counter() - start
        requested = sum(1 for _ in result.run_requests[0].asset_graph_subset.iterate_asset_partitions()) if result.run_requests else 0
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
    backfill = PartitionBackfill.from_asset_graph_subset("bench", time.time(), dict(request.tags), instance,
                                                         request.asset_graph_subset, None, None, None)
    instance.add_backfill(backfill)
    with build_sensor_context(instance=instance, resources={"lake": lake, "engine": engine},
                              repository_def=defs.get_repository_def(), cursor=result.cursor) as context:
        start = time.perf_counter()
        again = nightly_backfill(context)
        waiting_s = time.perf_counter() - start
    return {"backfill_row_bytes": len(serialize_value(backfill)), "tick_while_unfinished_s": round(waiting_s, 3),
            "cursor_keeps_more": (result.cursor or "").endswith("+more"), "launched_while_unfinished": len(again.run_requests or [])}


def landing(n: int) -> dict:
    """One crawl_landing_sensor tick over a landing folder of n new shard files."""
    from dagster import DagsterInstance, build_sensor_context

    from dataset_assets import settings
    from dataset_assets.defs.crawl import crawl_landing_sensor
    from resources.landing import CrawlLanding

    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as home:
        for i in range(n):
            Path(folder, f"CC-MAIN-2026-44-{i:06d}.warc.gz").touch()
        instance = DagsterInstance.local_temp(home)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with build_sensor_context(instance=instance, resources={"landing": CrawlLanding(location=folder)}) as context:
            start = time.perf_counter()
            result = crawl_landing_sensor(context)
            tick_s = time.perf_counter() - start
        return {"shards": n, "case": "landing tick", "tick_s": round(tick_s, 2), "registered": len(result.run_requests),
                "batch": settings.landing_batch(), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "rss_before_tick_mib": round(base, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1000,10000,100000")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, case = int(args.one[0]), args.one[1]
        print(json.dumps(landing(n) if case == "landing" else one(n, case == "1")))
        return 0
    runs = []
    for n in (int(s) for s in args.scales.split(",")):
        for built in ("landing", "1", "0"):
            done = subprocess.run([sys.executable, __file__, "--one", str(n), built], capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(result), flush=True)
            runs.append(result)
    write_result("nightly_scale", {"runs": runs, "command": f"python benchmarks/nightly_scale.py --scales {args.scales}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
