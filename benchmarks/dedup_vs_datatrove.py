"""Near-duplicate removal against datatrove's MinHash pipeline: speed, memory and agreement.

Usage: python benchmarks/dedup_vs_datatrove.py [--scales 1,4,16] [--no-datatrove]

The documents: every crawl_docs document of the sample shards (../shared/data/crawl), then for scale
k, k-1 more variants of each: most rewritten (30% of the words replaced: new, distinct documents),
some lightly edited (3 words: near duplicates) and some copied verbatim (exact duplicates). Both tools
read the same docs.jsonl.

Each stage of each tool runs in its own process pinned to one core (`taskset -c 0`), so the figures
are the CPU seconds and peak RSS of that stage alone:
- ours: signatures (dataset_assets.dedup.signatures), band partitions (all 15: exact + 14 bands, one
  after another in one process), clusters (union-find; with verification off, the same decision
  rule as datatrove, and again with Jaccard verification at 0.75);
- datatrove 0.10.1: MinhashDedupSignature, MinhashDedupBuckets (14 tasks), MinhashDedupCluster,
  MinhashDedupFilter, each under LocalPipelineExecutor(workers=1), in benchmarks/.venvs/datatrove.
Same parameters: word 5-grams, 14 bands x 8 hashes. Agreement of the two clusterings: pairs of
documents both call duplicates over pairs either calls duplicates.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path


def peak_mb() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would carry the forking parent's peak)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import SHARED, write_result  # noqa: E402

DT_PYTHON = HERE / ".venvs" / "datatrove" / "bin" / "python"
# What datatrove's MinHash stages import beyond the [io,processing] extras crawl_docs_throughput installs.
DT_EXTRA = ["regex", "xxhash<4", "tokenizers", "spacy"]  # spacy: its English word tokenizer; xxhash 4 refuses str
PARTITION_GROUPS = 14


def base_documents() -> list[dict]:
    from dataset_assets.crawl.documents import DocumentRules, DocumentStats
    from dataset_assets.crawl.ingest import ingest_shard
    from dataset_assets.crawl.readers import ReadReport

    docs = []
    for path in sorted((SHARED / "crawl").iterdir()):
        for batch in ingest_shard(
            path.name, path.name, lambda p=path: str(p), DocumentRules(), DocumentStats(), ReadReport()
        ):
            docs += [
                {"text": t, "date": d}
                for t, d in zip(batch.column("text").to_pylist(), batch.column("date").to_pylist())
            ]
    return docs


def variant(text: str, rng: random.Random, share: float) -> str:
    words = text.split()
    for _ in range(max(1, int(len(words) * share))):
        words[rng.randrange(len(words))] = f"w{rng.randrange(10**6)}"
    return " ".join(words)


def make_documents(scale: int, out: Path) -> int:
    rng = random.Random(scale)
    base = base_documents()
    rows = []
    for copy in range(scale):
        for i, doc in enumerate(base):
            if copy == 0:
                text = doc["text"]
            else:
                roll = rng.random()
                text = doc["text"] if roll < 0.05 else variant(doc["text"], rng, 0.01 if roll < 0.15 else 0.3)
            rows.append({"id": f"c{copy:02d}-{i:05d}", "text": text, "date": doc["date"]})
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return len(rows)


# -- our stages, each run in a pinned child: `python dedup_vs_datatrove.py --stage NAME WORK` ---------------


def our_stage(stage: str, work: Path) -> dict:
    start, cpu0 = time.perf_counter(), time.process_time()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataset_assets.dedup import buckets as bucket_stage
    from dataset_assets.dedup.minhash import MinHashParams
    from dataset_assets.dedup.signatures import signature_batches, signature_schema

    params, ours = MinHashParams(), work / "ours"
    ours.mkdir(exist_ok=True)
    if stage == "signatures":
        # Streamed in batches of 512, as the asset reads a crawl_docs partition.
        def batches():
            rows = []
            with open(work / "docs.jsonl") as f:
                for line in f:
                    rows.append({**json.loads(line), "shard": "bench", "url": ""})
                    if len(rows) == 512:
                        yield pa.RecordBatch.from_pylist(rows, schema=DOC_SCHEMA)
                        rows = []
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=DOC_SCHEMA)

        DOC_SCHEMA = pa.schema(
            [
                ("id", pa.string()),
                ("shard", pa.string()),
                ("url", pa.string()),
                ("date", pa.string()),
                ("text", pa.string()),
            ]
        )
        with pq.ParquetWriter(ours / "signatures.parquet", signature_schema(params), compression="zstd") as w:
            for batch in signature_batches(batches(), params):
                w.write_batch(batch)
    elif stage == "buckets":
        for partition in bucket_stage.partition_names(PARTITION_GROUPS):
            columns = bucket_stage.key_columns(partition, params, PARTITION_GROUPS)
            table = pq.read_table(
                ours / "signatures.parquet",
                columns=bucket_stage.ATTRIBUTES + [c for c in columns if c not in bucket_stage.ATTRIBUTES],
            )
            members = bucket_stage.partition_members(table, partition, params, PARTITION_GROUPS)
            pq.write_table(members, ours / f"members-{partition}.parquet", compression="zstd")
    else:
        from dataset_assets.dedup.clusters import ClusterStats, cluster

        verify = 0.75 if stage == "clusters-verified" else None
        members = pa.concat_tables(pq.read_table(p) for p in sorted(ours.glob("members-*.parquet")))
        members = members.sort_by([("band", "ascending"), ("root", "ascending"), ("id", "ascending")])

        def texts_for(wanted):
            ids = {i for v in wanted.values() for i in v}
            texts = {}
            with open(work / "docs.jsonl") as f:
                for line in f:
                    row = json.loads(line)
                    if row["id"] in ids:
                        texts[row["id"]] = row["text"]
            return texts

        stats = ClusterStats()
        decisions = cluster(members, texts_for, params.ngram, verify, stats)
        pq.write_table(decisions, ours / f"{stage}.parquet")
        return {
            **_usage(start, cpu0),
            "removed": dict(stats.removed),
            "pairs_verified": stats.near_pairs_checked,
            "pairs_rejected": stats.near_pairs_rejected,
            "candidate_rows": stats.candidate_rows,
        }
    return _usage(start, cpu0)


def _usage(start: float, cpu0: float) -> dict:
    return {
        "cpu_seconds": round(time.process_time() - cpu0, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "peak_rss_mb": peak_mb(),
    }


def pinned(cmd: list[str]) -> dict:
    done = subprocess.run(["taskset", "-c", "0", *cmd], capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- agreement -------------------------------------------------------------------------------------------------


def pairs(groups: list[list[str]]) -> int:
    return sum(len(g) * (len(g) - 1) // 2 for g in groups)


def agreement(a: dict[str, str], b: dict[str, str]) -> dict:
    """a, b: document id -> cluster label (only clustered documents). Pairs both call duplicates over
    pairs either calls duplicates, counted from cluster sizes and their intersections."""
    groups_a, groups_b = defaultdict(list), defaultdict(list)
    for doc, label in a.items():
        groups_a[label].append(doc)
    for doc, label in b.items():
        groups_b[label].append(doc)
    both = defaultdict(int)
    for doc in a.keys() & b.keys():
        both[(a[doc], b[doc])] += 1
    pa_, pb_, pboth = (
        pairs(list(groups_a.values())),
        pairs(list(groups_b.values())),
        sum(n * (n - 1) // 2 for n in both.values()),
    )
    either = pa_ + pb_ - pboth
    return {
        "pairs_ours": pa_,
        "pairs_datatrove": pb_,
        "pairs_both": pboth,
        "agreement": round(pboth / either, 4) if either else 1.0,
    }


def our_clusters(path: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["id", "cluster"])
    return dict(zip(t.column("id").to_pylist(), t.column("cluster").to_pylist()))


def datatrove_clusters(work: Path) -> dict[str, str]:
    out = {}
    for folder in ("kept", "removed"):
        for path in (work / "datatrove" / folder).glob("*.jsonl"):
            for line in open(path):
                row = json.loads(line)
                cid = row.get("metadata", {}).get("minhash_cluster_id", -1)
                if cid != -1:
                    out[row["id"]] = str(cid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument("--stage", nargs=2, metavar=("NAME", "WORK"), help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(our_stage(args.stage[0], Path(args.stage[1]))))
        return
    import tempfile

    runs = []
    for scale in [int(s) for s in args.scales.split(",")]:
        work = Path(args.work or tempfile.mkdtemp(prefix="dedup-bench-")) / f"x{scale}"
        work.mkdir(parents=True, exist_ok=True)
        n = make_documents(scale, work / "docs.jsonl")
        print(f"scale {scale}: {n} documents", file=sys.stderr)
        row = {"scale": scale, "documents": n, "ours": {}, "datatrove": {}}
        for stage in ("signatures", "buckets", "clusters", "clusters-verified"):
            row["ours"][stage] = pinned([sys.executable, __file__, "--stage", stage, str(work)])
            print(f"  ours {stage}: {row['ours'][stage]}", file=sys.stderr)
        ours_cpu = sum(row["ours"][s]["cpu_seconds"] for s in ("signatures", "buckets", "clusters"))
        row["ours_docs_per_cpu_s"] = round(n / ours_cpu, 1)
        if not args.no_datatrove:
            if not DT_PYTHON.exists():
                from benchmarks.crawl_docs_throughput import ensure_datatrove

                ensure_datatrove()
            subprocess.run([str(DT_PYTHON), "-m", "pip", "install", "-q", *DT_EXTRA], check=True)
            for stage in (1, 2, 3, 4):
                row["datatrove"][f"stage{stage}"] = pinned(
                    [str(DT_PYTHON), str(HERE / "datatrove_minhash.py"), str(stage), str(work)]
                )
                print(f"  datatrove stage {stage}: {row['datatrove'][f'stage{stage}']}", file=sys.stderr)
            dt3 = sum(row["datatrove"][f"stage{s}"]["cpu_seconds"] for s in (1, 2, 3))
            dt4 = dt3 + row["datatrove"]["stage4"]["cpu_seconds"]
            row["datatrove_docs_per_cpu_s_3_stages"] = round(n / dt3, 1)
            row["datatrove_docs_per_cpu_s_4_stages"] = round(n / dt4, 1)
            row["speed_ratio_3_stages"] = round(dt3 / ours_cpu, 3)
            row["speed_ratio_vs_4_stages"] = round(dt4 / ours_cpu, 3)
            dt = datatrove_clusters(work)
            row["agreement_unverified"] = agreement(our_clusters(work / "ours" / "clusters.parquet"), dt)
            row["agreement_verified"] = agreement(our_clusters(work / "ours" / "clusters-verified.parquet"), dt)
        runs.append(row)
    write_result(
        "dedup_vs_datatrove",
        {
            "command": "python benchmarks/dedup_vs_datatrove.py --scales " + args.scales,
            "params": {"ngram": 5, "bands": 14, "rows": 8},
            "note": "CPU seconds of each stage in its own process pinned to one core; ratio > 1 means ours is faster",
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
