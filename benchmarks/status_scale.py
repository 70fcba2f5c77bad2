"""How `status` (the computation the nightly backfill and `dataset-assets run` use) grows with the crawl:
one status pass over a lake whose catalog records N shards, every shard through every stage and
every (shard x strategy) rephrased partition current ("everything built"), or a catalog with no
records ("nothing built"). Each N runs in its own process, so peak memory is that pass's own.

    python benchmarks/status_scale.py [--scales 1000,10000,100000]

Measured per N: building the catalog (one compacted file, as `catalog --rebuild` writes it), one
status pass (seconds, peak RSS), and the file operations that pass makes on the lake's filesystem
(counted through a wrapping pyarrow filesystem: on S3 each is a request). The catalog only: the
records are synthetic, no partition data is written, so the walk it replaces is not timed here
(the issue's measurements of the walk on main: 28-45 s with nothing built and about 480 s with
everything built at 100,000 shards).
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

import pyarrow.fs as pafs  # noqa: E402

from benchmarks.common import write_result  # noqa: E402


class CountingHandler(pafs.FileSystemHandler):
    """A pyarrow FileSystemHandler that counts every call it passes on to the real filesystem."""

    def __init__(self, fs):
        self.fs, self.calls = fs, {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def get_type_name(self):
        return "counting"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def __eq__(self, other):
        return self is other

    def get_file_info(self, paths):
        self._count("get_file_info")
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        self._count("list")
        return self.fs.get_file_info(selector)

    def open_input_stream(self, path):
        self._count("open")
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        self._count("open")
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata=None):
        self._count("write")
        return self.fs.open_output_stream(path)

    def open_append_stream(self, path, metadata=None):
        self._count("write")
        return self.fs.open_append_stream(path)

    def create_dir(self, path, recursive):
        self._count("create_dir")
        return self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self._count("delete")
        return self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._count("delete")
        return self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        return self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self._count("delete")
        return self.fs.delete_file(path)

    def move(self, src, dest):
        self._count("move")
        return self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self._count("copy")
        return self.fs.copy_file(src, dest)


def shard_files(n: int) -> list[str]:
    return [f"CC-MAIN-2026-44-{i:06d}.warc.gz" for i in range(n)]


def registration_ticks(n: int) -> list[list[list[str]]]:
    """The groups of n files, registered a landing-sensor tick (LANDING_SENSOR_BATCH files) at a time
    under CRAWL_BATCH_FILES (a number, or auto: `batches.plan`)."""
    from dataset_assets import settings
    from dataset_assets.status import batches

    files, ticks, keys = shard_files(n), [], []
    for start in range(0, n, settings.landing_batch()):
        groups = batches.plan(files[start : start + settings.landing_batch()], keys, settings.crawl_batch_files())
        keys += [batches.key_of(g) for g in groups]
        ticks.append(groups)
    return ticks


def partition_keys(n: int) -> list[str]:
    """The crawl_shards keys of n files, as the landing sensor registers them."""
    from dataset_assets.status import batches

    return [batches.key_of(g) for tick in registration_ticks(n) for g in tick]


def batch_option(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> str:
    """--batch-files (a number, or auto) sets CRAWL_BATCH_FILES for this process and its children; the
    result's name says it (no suffix for 1, a partition per file)."""
    import os

    os.environ["CRAWL_BATCH_FILES"] = str(args.batch_files)
    return name if str(args.batch_files) == "1" else f"{name}_batches_{args.batch_files}"


def records(n: int, strategies: dict, generator: str, bands: list[str]) -> list[dict]:
    from dataset_assets.rephrase.strategies import prompt_hash
    from dataset_assets.status.lake_walk import facts_buckets

    shards = shard_files(n)
    fingerprints = {s: f"d{i:015d}" for i, s in enumerate(shards)}
    out = []
    for s in shards:
        out.append({"asset": "crawl_docs", "partition": s, "data_version": "v", "facts": {}})
        out.append({"asset": "dedup_signatures", "partition": s, "data_version": "v", "facts": {"params": "p"}})
        out.append(
            {
                "asset": "seeds",
                "partition": s,
                "data_version": "v",
                "facts": {"kept_fingerprint": f"k{s}", "dedup_fingerprint": fingerprints[s]},
            }
        )
        for name, strategy in strategies.items():
            out.append(
                {
                    "asset": "rephrased",
                    "partition": f"{s}|{name}",
                    "data_version": "",
                    "facts": {
                        "prompt_hash": prompt_hash(strategy),
                        "generator": generator,
                        "seeds_fingerprint": f"k{s}",
                    },
                }
            )
    out += [
        {"asset": "dedup_buckets", "partition": b, "data_version": "v", "facts": facts_buckets(shards)} for b in bands
    ]
    out.append(
        {"asset": "dedup_clusters", "partition": "", "data_version": "v", "facts": {"fingerprints": fingerprints}}
    )
    return out, shards


def _setup():
    from dataset_assets import settings
    from dataset_assets.orchestration.graph import dedup_bands
    from dataset_assets.rephrase.strategies import load_strategies

    return (
        load_strategies(settings.PROJECT_ROOT / "prompts"),
        dedup_bands.get_partition_keys(),
        "HuggingFaceTB/SmolLM2-135M-Instruct@bench",
    )


def build(n: int, built: bool, root: str, generator: str = "") -> dict:
    """Write the catalog of N shard files (one compacted file, as a rebuild writes it) and, with
    batches of several files, the batch registry (as the landing sensor writes it, a tick at a time)."""
    from dataset_assets.status import batches, catalog
    from resources.lake import Lake

    strategies, bands, default_generator = _setup()
    rows = records(n, strategies, generator or default_generator, bands)[0] if built else []
    start = time.perf_counter()
    catalog.replace_all(Lake(root=root), rows)
    for groups in registration_ticks(n):
        batches.register(Lake(root=root), groups)
    return {
        "catalog_write_s": round(time.perf_counter() - start, 2),
        "catalog_bytes": sum(f.stat().st_size for f in Path(root, catalog.CATALOG).rglob("*.parquet")),
    }


def measure(n: int, root: str) -> dict:
    """One status pass in a fresh process: seconds, peak RSS, file operations."""
    from dataset_assets.status.judge import graph_status
    from resources.lake import Lake

    strategies, bands, generator = _setup()
    shards = partition_keys(n)
    lake = Lake(root=root)
    handler = CountingHandler(lake.fs)
    lake._fs = pafs.PyFileSystem(handler)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    status = graph_status(lake, shards, strategies, generator, bands)
    seconds = time.perf_counter() - start
    counts = status["rephrased"].summary(sample=0)
    return {
        "status_s": round(seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mib": round(base, 1),
        "file_operations": handler.calls,
        "rephrased": {k: counts[k] for k in ("partitions", "current", "outdated", "missing")},
    }


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1000,10000,100000")
    parser.add_argument(
        "--batch-files",
        default="1",
        help="landing files per crawl_shards partition (CRAWL_BATCH_FILES: a number or auto)",
    )
    parser.add_argument("--build", nargs="+", help=argparse.SUPPRESS)  # internal: N built ROOT [GENERATOR]
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # internal: N ROOT
    args = parser.parse_args()
    if args.build:
        print(json.dumps(build(int(args.build[0]), args.build[1] == "1", args.build[2], *args.build[3:])))
        return 0
    if args.measure:
        print(json.dumps(measure(int(args.measure[0]), args.measure[1])))
        return 0
    name = batch_option(parser, args, "status_scale")
    runs = []
    for n in (int(s) for s in args.scales.split(",")):
        for built in ("0", "1"):
            with tempfile.TemporaryDirectory() as root:
                result = {
                    "shards": n,
                    "partitions": len(partition_keys(n)),
                    "case": "everything built" if built == "1" else "nothing built",
                }
                result.update(_child("--build", str(n), built, root))
                result.update(_child("--measure", str(n), root))
            print(json.dumps(result), flush=True)
            runs.append(result)
    write_result(
        name,
        {
            "runs": runs,
            "command": f"python benchmarks/status_scale.py --scales {args.scales} --batch-files {args.batch_files}",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
