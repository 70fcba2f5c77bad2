"""Unigram counting throughput against bare `tokenizers` batch encoding, and peak memory vs shard count.

Usage: python benchmarks/unigram_throughput.py [--repeat-corpus 2] [--repeats 5] [--shards 10]

Throughput: both sides get the same English crawl documents (the sample shards, ingested with the
project's default rules), the same GPT-2 tokenizer.json and the same batch size, on one pinned core.
"bare" is `Tokenizer.encode_batch(batch, add_special_tokens=False)` and nothing else; "bare_fast" is
`encode_batch_fast` (no offsets), which the resource uses; "unigrams" is the project's
`count_unigrams` through the `tokenizer` resource: encoding plus flattening ids and `np.bincount`
into the vocab vector. Runs are interleaved; medians reported.

Memory: a tmp lake holds `--shards` copies of the documents as crawl_docs partitions; a fresh
subprocess counts 1 shard and another counts all of them the way the assets do (stream each
partition from the lake, count, sum into one vector), and each reports its peak RSS (ru_maxrss).
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

import numpy as np  # noqa: E402

from benchmarks.common import SHARED, median, pin_to_one_core, timed, write_result  # noqa: E402

TOKENIZER = SHARED / "tokenizers" / "gpt2-tokenizer.json"


def count_lake_shards(lake_root: str, shards: int, tokenizer: str, batch_size: int) -> dict:
    """What a child process measures: stream `shards` crawl_docs partitions, count, sum."""
    from dataset_assets.stats.corpora import lake_texts
    from dataset_assets.stats.unigrams import count_unigrams
    from resources.lake import Lake
    from resources.tokenizer import TokenizerResource

    lake = Lake(root=lake_root)
    tok = TokenizerResource(path=tokenizer, batch_size=batch_size).load()
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = np.zeros(tok.vocab_size, dtype=np.int64)
    start = time.perf_counter()
    for shard in lake.partition_values("crawl_docs", "shard")[:shards]:
        texts = lake_texts(lake, "crawl_docs", {"shard": shard}, False, [0])
        total += count_unigrams(texts, tok.encode_batch, tok.vocab_size, batch_size).counts
    seconds = time.perf_counter() - start
    return {
        "shards": shards,
        "tokens": int(total.sum()),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_and_tokenizer_mib": round(baseline_kib / 1024, 1),
    }


def write_shards(lake_root: str, docs, shards: int) -> None:
    from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
    from resources.lake import Lake

    lake = Lake(root=lake_root)
    for i in range(shards):
        lake.write_partition(
            "crawl_docs", {"shard": f"shard-{i:02d}"}, docs.to_batches(max_chunksize=4096), DOCUMENT_SCHEMA
        )


def measure_memory(docs, shards: int, batch_size: int) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(tmp, docs, shards)
        for n in (1, shards):
            cmd = [sys.executable, __file__, "--child", tmp, "--child-shards", str(n), "--batch-size", str(batch_size)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat-corpus", type=int, default=2, help="repeat the sample documents this many times")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--shards", type=int, default=10, help="shard count of the memory comparison")
    parser.add_argument("--tokenizer", default=str(TOKENIZER))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-shards", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    core = pin_to_one_core()
    if args.child:
        print(json.dumps(count_lake_shards(args.child, args.child_shards, args.tokenizer, args.batch_size)))
        return

    import pyarrow as pa
    from tokenizers import Tokenizer

    from benchmarks.seeds_scoring import crawl_documents
    from dataset_assets.stats.unigrams import count_unigrams
    from resources.tokenizer import TokenizerResource

    docs = crawl_documents()
    texts = pa.concat_tables([docs] * args.repeat_corpus).column("text").to_pylist()
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    bare_tok = Tokenizer.from_file(args.tokenizer)
    tok = TokenizerResource(path=args.tokenizer, batch_size=args.batch_size).load()
    tokens = sum(len(ids) for b in batches for ids in tok.encode_batch(b))

    def bare():
        for b in batches:
            bare_tok.encode_batch(b, add_special_tokens=False)

    def bare_fast():
        for b in batches:
            bare_tok.encode_batch_fast(b, add_special_tokens=False)

    def unigrams():
        count_unigrams(batches, tok.encode_batch, tok.vocab_size, args.batch_size)

    sides = (("bare", bare), ("bare_fast", bare_fast), ("unigrams", unigrams))
    for _, fn in sides:  # untimed: fills each tokenizer's word cache, so no side pays a cold start
        fn()
    runs: dict[str, list[float]] = {name: [] for name, _ in sides}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all sides alike
        for name, fn in sides:
            runs[name] += timed(fn, 1)
    rate = {k: tokens / median(v) for k, v in runs.items()}
    memory = measure_memory(docs, args.shards, args.batch_size)
    write_result(
        "unigram_throughput",
        {
            "command": (
                f"python benchmarks/unigram_throughput.py --repeat-corpus {args.repeat_corpus} "
                f"--repeats {args.repeats} --batch-size {args.batch_size} --shards {args.shards}"
            ),
            "pinned_core": core,
            "tokenizer": Path(args.tokenizer).name,
            "documents": len(texts),
            "tokens": tokens,
            "batch_size": args.batch_size,
            "median_seconds": {k: round(median(v), 3) for k, v in runs.items()},
            "tokens_per_s": {k: round(v) for k, v in rate.items()},
            "unigrams_vs_bare": round(rate["unigrams"] / rate["bare"], 3),
            "unigrams_vs_bare_fast": round(rate["unigrams"] / rate["bare_fast"], 3),
            "memory": memory,
            "peak_rss_ratio_many_vs_one_shard": round(memory[1]["peak_rss_mib"] / memory[0]["peak_rss_mib"], 3),
            "goal": "unigrams_vs_bare >= 0.9; peak RSS flat from 1 to many shards",
        },
    )


if __name__ == "__main__":
    main()
