"""What one run per shard costs against one run over a range of shards, for `seeds`: the quality
model loads once per run, and every run the daemon launches is a new process that imports the code.

    python benchmarks/seeds_runs.py [--lake data/lake] [--repeats 3]

Run after `make demo` (it reads the lake's crawl_docs, dedup and quality_classifier; it rewrites the
lake's seeds partitions with the same result). Measured, alternating, in one process on a temporary
Dagster instance: the lake's N shards as N one-shard runs (what a sensor, or a backfill before the
multi-run policy, launched) and as one range run (what a backfill run of up to
BACKFILL_SHARDS_PER_RUN shards is now). Then the floor every launched run pays before its step: a
fresh Python process importing the code location (`dataset_assets.definitions`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, median, write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default=str(ROOT / "data" / "lake"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from dagster import DagsterInstance, materialize

    from dataset_assets import settings
    from dataset_assets.defs.seeds import seeds
    from dataset_assets.orchestration.graph import crawl_shards
    from resources.lake import Lake

    lake = Lake(root=args.lake)
    shards = sorted(lake.partition_values("crawl_docs", "shard"))
    if not shards or not lake.exists(["quality_classifier", "calibration.json"]):
        print(f"no crawl_docs or quality_classifier in {args.lake}: run `make demo` first")
        return 2
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, shards)
    resources = {"lake": lake}
    span = {"dagster/asset_partition_range_start": shards[0], "dagster/asset_partition_range_end": shards[-1]}
    one_each, ranged = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for shard in shards:
            assert materialize([seeds], partition_key=shard, resources=resources, instance=instance).success
        one_each.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert materialize([seeds], resources=resources, instance=instance, tags=span).success
        ranged.append(time.perf_counter() - start)
    imports = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dataset_assets.definitions"], check=True, cwd=ROOT)
        imports.append(time.perf_counter() - start)
    n = len(shards)
    grouped = -(-100_000 // settings.backfill_shards_per_run())  # runs of BACKFILL_SHARDS_PER_RUN shards
    result = {
        "shards": n,
        "documents": sum(lake.partition_rows("crawl_docs", {"shard": s}) for s in shards),
        "one_run_per_shard_s": [round(x, 3) for x in one_each],
        "one_range_run_s": [round(x, 3) for x in ranged],
        "in_run_saving_per_shard_s": round((median(one_each) - median(ranged)) / n, 3),
        "process_start_per_run_s": [round(x, 3) for x in imports],
        # A first night over 100,000 shards: runs launched for seeds, and the process starts alone.
        "at_100k_shards": {
            "runs_one_per_shard": 100_000,
            "runs_with_multi_run_policy": grouped,
            "process_start_hours_one_per_shard": round(100_000 * median(imports) / 3600, 1),
            "process_start_hours_multi_run": round(grouped * median(imports) / 3600, 2),
        },
    }
    write_result("seeds_runs", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
