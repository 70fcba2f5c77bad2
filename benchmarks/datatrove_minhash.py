#!/usr/bin/env python3
"""The datatrove side of benchmarks/dedup_vs_datatrove.py: one stage of datatrove's MinHash pipeline
(0.10.1) per call, under LocalPipelineExecutor(workers=1), in datatrove's own virtual environment.

Usage: benchmarks/.venvs/datatrove/bin/python benchmarks/datatrove_minhash.py STAGE WORKDIR
  STAGE 1 signatures (tasks=1), 2 buckets (tasks=num_buckets), 3 clusters (tasks=1, cluster ids saved),
  4 filter (kept and removed documents written with their cluster ids). WORKDIR holds docs.jsonl.
Prints one JSON line: CPU seconds, wall seconds and peak RSS of this process.
"""

import json
import os
import sys
import time


def peak_mb() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would carry the forking parent's peak)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


stage, work = int(sys.argv[1]), sys.argv[2]
start, cpu0 = time.perf_counter(), time.process_time()

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.dedup.minhash import (  # noqa: E402
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402

config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1)
d = lambda *p: os.path.join(work, "datatrove", *p)  # noqa: E731
reader = lambda: JsonlReader(work, glob_pattern="docs.jsonl", compression=None)  # noqa: E731
pipelines = {
    1: ([reader(), MinhashDedupSignature(output_folder=d("sigs"), config=config)], 1),
    2: ([MinhashDedupBuckets(input_folder=d("sigs"), output_folder=d("buckets"), config=config)], config.num_buckets),
    3: (
        [
            MinhashDedupCluster(
                input_folder=d("buckets"), output_folder=d("remove"), config=config, save_cluster_id=True
            )
        ],
        1,
    ),
    4: (
        [
            reader(),
            MinhashDedupFilter(
                input_folder=d("remove"),
                exclusion_writer=JsonlWriter(d("removed"), compression=None),
                load_cluster_ids=True,
            ),
            JsonlWriter(d("kept"), compression=None),
        ],
        1,
    ),
}
pipeline, tasks = pipelines[stage]
LocalPipelineExecutor(
    pipeline=pipeline, tasks=tasks, workers=1, logging_dir=d("logs", f"stage{stage}"), skip_completed=False
).run()
print(
    json.dumps(
        {
            "stage": stage,
            "cpu_seconds": round(time.process_time() - cpu0, 3),
            "seconds": round(time.perf_counter() - start, 3),
            "peak_rss_mb": peak_mb(),
        }
    )
)
