"""Mixture build time against a bare DuckDB `COPY (SELECT ...) TO 'x.parquet'` of the same rows.

Usage: python benchmarks/mixture_build.py [--shards 8] [--docs-per-shard 5000] [--budget 8000000] [--repeats 5]

A synthetic lake in a temporary directory: seeds and rephrased partitions (three strategies) whose
text is drawn word by word from WikiText-2 and ABC news word frequencies, documents of lognormal
length. "build" is `build_mixtures` publishing a new version with the token index already cached
(the steady state: each upstream partition is tokenised once per content version); it hashes
every upstream file, samples by tokens, shuffles, writes zstd shards, checksums them and writes
card and manifest.
"bare" is one DuckDB statement that reads the same upstream files, joins the same (component,
shard, id, repeat) rows with the same lineage columns, shuffles them and COPYs them to one zstd
Parquet file. Runs are
interleaved; medians reported. "cold" (token counting included) and "reuse" (identical inputs:
hash upstream, find the version) are timed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from benchmarks.common import SHARED, median, write_result  # noqa: E402
from dataset_assets.mixtures.build import build_mixtures  # noqa: E402
from dataset_assets.mixtures.pull import MIXTURES  # noqa: E402
from dataset_assets.mixtures.recipe import parse_recipe  # noqa: E402
from dataset_assets.quality.seeds import SEED_SCHEMA  # noqa: E402
from dataset_assets.rephrase.store import REPHRASED_SCHEMA
from resources.lake import Lake  # noqa: E402

STRATEGIES = ("wikipedia", "qa", "summary")
TOKENIZER = str(SHARED / "tokenizers" / "gpt2-tokenizer.json")


def vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """WikiText-2 and ABC news words with their frequencies: text drawn from it has real token statistics."""
    text = (
        (SHARED / "quality" / "wikitext-2-valid.txt").read_text()
        + " "
        + (SHARED / "quality" / "abc-news-lee.txt").read_text()
    )
    words, counts = np.unique(np.array(text.split()), return_counts=True)
    return words, counts / counts.sum()


def make_lake(root: Path, shards: int, docs: int, seed: int = 0) -> tuple[Lake, int]:
    rng = np.random.default_rng(seed)
    words, probs = vocabulary()
    lake = Lake(root=str(root))
    rows_written = 0

    def texts(n: int, mean_words: float) -> list[str]:
        # Unigram draws: no phrase repeats, so the text compresses about as badly as real prose or worse.
        lengths = np.maximum(20, rng.lognormal(np.log(mean_words), 0.6, n).astype(int))
        drawn = words[rng.choice(len(words), size=int(lengths.sum()), p=probs)]
        ends = np.cumsum(lengths)
        return [" ".join(drawn[e - k : e]) for e, k in zip(ends, lengths)]

    for s in range(shards):
        shard = f"CC-MAIN-2024-10-{s:05d}.warc.gz"
        bodies = texts(docs, 150)
        seeds = []
        for i, body in enumerate(bodies):
            kept = bool(rng.random() < 0.8)
            seeds.append(
                {
                    "id": f"{s:03d}{i:06d}",
                    "text": body,
                    "url": f"https://example.org/{s}/{i}",
                    "shard": shard,
                    "crawl": "CC-MAIN-2024-10",
                    "lang": "en",
                    "lang_score": 0.97,
                    "content_hash": f"{s}-{i}",
                    "record_key": f"k{s}-{i}",
                    "warc_record_id": f"<urn:uuid:{s:08d}-{i:012d}>",
                    "offset": i * 20_000,
                    "date": "2024-03-01",
                    "source_file": shard,
                    "format": "warc",
                    "chars": len(body),
                    "capped": False,
                    "quality_score": 0.9,
                    "quality_percentile": 95.0,
                    "kept": kept,
                    "drop_reason": None if kept else "low_quality",
                }
            )
        lake.write_partition(
            "seeds", {"shard": shard}, pa.Table.from_pylist(seeds, schema=SEED_SCHEMA).to_batches(), SEED_SCHEMA
        )
        rows_written += len(seeds)
        kept_seeds = [r for r in seeds if r["kept"]]
        for strategy in STRATEGIES:
            rewrites = texts(len(kept_seeds), 100)
            rows = []
            for seed_row, body in zip(kept_seeds, rewrites):
                kept = bool(rng.random() < 0.9)
                rows.append(
                    {
                        "id": f"{seed_row['id']}-{strategy}",
                        "source_id": seed_row["id"],
                        "shard": shard,
                        "strategy": strategy,
                        "prompt_hash": f"{strategy}-1",
                        "generator": "bench-model@1",
                        "sampling": "{}",
                        "text": body if kept else "",
                        "prompt_tokens": 400,
                        "completion_tokens": 200,
                        "finish_reason": "stop",
                        "kept": kept,
                        "drop_reason": None if kept else "too_short",
                    }
                )
            key = {"shard": shard, "strategy": strategy}
            lake.write_partition(
                "rephrased", key, pa.Table.from_pylist(rows, schema=REPHRASED_SCHEMA).to_batches(), REPHRASED_SCHEMA
            )
            lake.put_json([*lake.partition_parts("rephrased", key), "_manifest.json"], {"prompt_hash": f"{strategy}-1"})
            rows_written += len(rows)
    return lake, rows_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--docs-per-shard", type=int, default=5000)
    parser.add_argument("--budget", type=int, default=8_000_000, help="mixture token budget")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        lake, lake_rows = make_lake(root / "lake", args.shards, args.docs_per_shard)
        print(f"lake: {lake_rows:,} upstream rows in {time.perf_counter() - start:.1f} s", flush=True)
        recipe = parse_recipe(
            {
                "budget_tokens": args.budget,
                "seed": 1,
                "max_repetition": 1.0,
                "shard_rows": 10_000,
                "components": [
                    {"source": "natural", "weight": 0.7},
                    *({"source": "rephrased", "strategy": s, "weight": 0.1} for s in STRATEGIES),
                ],
            },
            "bench",
        )

        def unpublish():
            shutil.rmtree(lake.path(MIXTURES, "bench"), ignore_errors=True)

        def build():
            (published,) = build_mixtures(lake, recipe, TOKENIZER)
            assert not published.reused
            return published

        cold_start = time.perf_counter()
        published = build()  # tokenises every upstream partition once and caches the counts
        cold = time.perf_counter() - cold_start
        manifest = published.manifest
        version_dir = lake.path(MIXTURES, "bench", published.version)
        con = duckdb.connect()
        picked = con.sql(
            f"SELECT component, shard, source_id AS id, repeat FROM read_parquet('{version_dir}/part-*.parquet')"
        ).to_arrow_table()
        reuse_start = time.perf_counter()
        assert build_mixtures(lake, recipe, TOKENIZER)[0].reused
        reuse = time.perf_counter() - reuse_start

        seeds = sorted(str(p) for p in (root / "lake" / "seeds").rglob("part-*.parquet"))
        rephrased = sorted(str(p) for p in (root / "lake" / "rephrased").rglob("part-*.parquet"))
        con.register("sel", picked)
        out = root / "bare.parquet"
        # The same columns the mixture rows carry (tokens aside, which upstream does not store).
        bare_sql = f"""
            COPY (
                WITH texts AS (
                    SELECT 'natural' AS component, shard, id, text, id AS seed_id, NULL AS rephrased_id,
                           NULL AS prompt_hash, NULL AS generator
                    FROM read_parquet({seeds!r}) WHERE kept
                    UNION ALL
                    SELECT strategy, shard, id, text, source_id, id, prompt_hash, generator
                    FROM read_parquet({rephrased!r}) WHERE kept
                )
                SELECT md5(concat_ws('|', s.component, s.shard, s.id, s.repeat)) AS id, t.text, s.component,
                       s.id AS source_id, s.shard, t.seed_id, t.rephrased_id, s.repeat, t.prompt_hash, t.generator
                FROM sel s JOIN texts t USING (component, shard, id)
                ORDER BY md5(concat_ws('|', 1, s.component, s.shard, s.id, s.repeat))
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
        """

        def bare():
            con.execute(bare_sql)

        runs = {"bare": [], "build": []}
        cpu = {"bare": [], "build": []}
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both sides alike
            unpublish()
            for name, fn in (("build", build), ("bare", bare)):
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                runs[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        bare_rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
        assert bare_rows == manifest["rows"], (bare_rows, manifest["rows"])
        med = {k: median(v) for k, v in runs.items()}
        med_cpu = {k: median(v) for k, v in cpu.items()}
        write_result(
            "mixture_build",
            {
                "command": (
                    f"python benchmarks/mixture_build.py --shards {args.shards} --docs-per-shard {args.docs_per_shard} "
                    f"--budget {args.budget} --repeats {args.repeats}"
                ),
                "upstream_rows": lake_rows,
                "mixture_rows": manifest["rows"],
                "mixture_tokens": manifest["tokens"],
                "mixture_bytes": sum(f["bytes"] for n, f in manifest["files"].items() if n.endswith(".parquet")),
                "achieved_shares": {k: round(v, 4) for k, v in manifest["achieved_shares"].items()},
                "seconds": {k: [round(x, 3) for x in v] for k, v in runs.items()},
                "median_s": {k: round(v, 3) for k, v in med.items()},
                "build_vs_bare": round(med["build"] / med["bare"], 3),
                # CPU seconds of all threads: steadier than wall time when other work shares the cores.
                "median_cpu_s": {k: round(v, 3) for k, v in med_cpu.items()},
                "build_vs_bare_cpu": round(med_cpu["build"] / med_cpu["bare"], 3),
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cold_build_s": round(cold, 3),
                "reuse_check_s": round(reuse, 3),
                "goal": "build_vs_bare <= 1.5",
            },
        )


if __name__ == "__main__":
    main()
