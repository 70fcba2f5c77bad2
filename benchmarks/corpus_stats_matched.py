"""`corpus_stats` with matched-size bootstrap figures against the full-size figures alone, at 10M tokens
over ten corpora, and peak memory as the number of corpora grows.

    python benchmarks/corpus_stats_matched.py [--corpora 10] [--tokens-per-corpus 1000000] [--repeats 3]

Corpora: GPT-2 token documents of the shared crawl and reference texts (the C4 sample, the other
crawl shards' documents, WikiText-2 valid, ABC news, the enwiki pages), drawn with replacement with
a different mix per corpus until each holds `--tokens-per-corpus` tokens, so the corpora differ the
way natural, seed and strategy corpora do. References: WikiText-2 test and ABC news.

- `full`: what `corpus_stats` computed before matched figures: `stats.corpus_rows` (describe, KL, JS,
  coverage and top tokens per corpus x reference) and its Zipf and KL plots.
- `matched`: the same plus what it computes now: the matched budget (the smallest corpus),
  `stats.matched.matched` per corpus (100 bootstrap draws resampling whole documents) passed into
  `corpus_rows`, and the interval plot.

Both read the same in-memory count vectors and documents (the lake reads, the same for both but for
the per-document counts `matched` reads, are left out). Interleaved, medians reported; goal: matched
at most 2x full. Memory: a fresh process computes the matched figures over 1, 4 and all of the
corpora, one corpus's documents alive at a time as in `report.matched_figures`, and reports its peak
RSS.

Writes benchmarks/results/corpus_stats_matched.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, SHARED, machine  # noqa: E402

TOKENIZER = SHARED / "tokenizers" / "gpt2-tokenizer.json"


def pools() -> list[list[str]]:
    """Documents of five kinds of text."""
    c4 = [json.loads(line)["text"] for line in gzip.open(SHARED / "crawl" / "c4-en-sample-1000.jsonl.gz", "rt")]
    cc = [json.loads(line)["text"] for line in gzip.open(SHARED / "crawl" / "cc-main-2019-30-docs.jsonl.gz", "rt")]
    wiki = [p for p in (SHARED / "quality" / "wikitext-2-valid.txt").read_text().split("\n \n") if len(p.split()) > 30]
    abc = [p for p in (SHARED / "quality" / "abc-news-lee.txt").read_text().splitlines() if len(p.split()) > 20]
    return [c4, cc, wiki, abc]


def documents(tok, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids, counts = np.unique(np.asarray(enc.ids, dtype=np.int64), return_counts=True)
        if len(ids):
            out.append((ids, counts.astype(np.int64)))
    return out


def make_corpus(pooled: list[list], weights: np.ndarray, tokens: int, rng) -> list:
    """Documents drawn with replacement (pool by `weights`) until `tokens` tokens."""
    picked, total = [], 0
    while total < tokens:
        pool = pooled[rng.choice(len(pooled), p=weights)]
        doc = pool[rng.integers(len(pool))]
        picked.append(doc)
        total += int(doc[1].sum())
    return picked


def vector(docs: list, vocab: int) -> np.ndarray:
    counts = np.zeros(vocab, dtype=np.int64)
    for ids, c in docs:
        np.add.at(counts, ids, c)
    return counts


def setup():
    """(tokenizer, vocab size, document pools, reference vectors)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    vocab = tok.get_vocab_size()
    texts = pools()
    pooled = [documents(tok, p) for p in texts]
    wiki_test = [p for p in (SHARED / "reference" / "wikitext-2-test.txt").read_text().split("\n \n") if p.strip()]
    refs = {"wikitext-2-test": vector(documents(tok, wiki_test), vocab), "abc-news": vector(pooled[3], vocab)}
    return tok, vocab, pooled, refs


def corpora_of(pooled: list, n_corpora: int, tokens: int, seed: int = 0):
    """The corpora one after another (each a different mix of the pools)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_corpora):
        yield make_corpus(pooled, rng.dirichlet(np.ones(len(pooled)) * 0.7), tokens, rng)


def full(corpora_objs, ref_objs, decode) -> list:
    """What corpus_stats computed before matched figures: the rows and its two plots."""
    from dataset_assets.stats import corpus_rows
    from dataset_assets.stats.plots import kl_png, zipf_png

    rows = corpus_rows(corpora_objs, ref_objs, decode, "gpt2", top_k=20)
    zipf_png({c.name: c.counts for c in corpora_objs}, {c.name: c.kind for c in corpora_objs}, "Zipf")
    kl_png([(r["corpus"], r["reference"], r["kl_bits"]) for r in rows if r["reference"]], "KL")
    return rows


def with_matched(corpora_objs, ref_objs, docs_by_name, decode) -> list:
    """The same plus the matched budget, every corpus's bootstrap and the interval plot."""
    from dataset_assets.stats import corpus_rows
    from dataset_assets.stats.matched import budget_for, matched
    from dataset_assets.stats.plots import interval_png, kl_png, zipf_png

    budget = budget_for([int(c.counts.sum()) for c in corpora_objs])
    refs = {r.name: r.counts for r in ref_objs}
    figures = {c.name: matched(c.counts, refs, budget, documents=docs_by_name[c.name]) for c in corpora_objs}
    rows = corpus_rows(corpora_objs, ref_objs, decode, "gpt2", top_k=20, matched_by_corpus=figures)
    zipf_png({c.name: c.counts for c in corpora_objs}, {c.name: c.kind for c in corpora_objs}, "Zipf")
    kl_png([(r["corpus"], r["reference"], r["kl_bits"]) for r in rows if r["reference"]], "KL")
    points = [
        (r["corpus"], r["reference"], r["kl_bits_matched"], r["kl_bits_low"], r["kl_bits_high"])
        for r in rows
        if r["reference"] and r["kl_bits_matched"] is not None
    ]
    interval_png(points, "KL at the matched budget", "KL, bits")
    return rows


def memory_child(n_corpora: int, tokens: int) -> None:
    """Peak RSS of the matched figures over `n_corpora`, one corpus's documents alive at a time (as
    `report.matched_figures` reads them)."""
    from dataset_assets.stats.matched import matched

    _, vocab, pooled, refs = setup()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for docs in corpora_of(pooled, n_corpora, tokens):
        matched(vector(docs, vocab), refs, tokens, documents=docs)
        del docs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"corpora": n_corpora, "peak_rss_mib": round(peak / 1024, 1), "after_setup_mib": round(base / 1024, 1)}
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=int, default=10)
    parser.add_argument("--tokens-per-corpus", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.tokens_per_corpus)
        return 0

    from dataset_assets.stats import Corpus

    tok, vocab, pooled, refs = setup()
    corpora = list(corpora_of(pooled, args.corpora, args.tokens_per_corpus))
    objs = [Corpus(f"c{i}", "strategy", vector(d, vocab), documents=len(d)) for i, d in enumerate(corpora)]
    ref_objs = [Corpus(name, "reference", counts) for name, counts in refs.items()]
    docs_by_name = {f"c{i}": d for i, d in enumerate(corpora)}
    decode = tok.id_to_token
    total = int(sum(c.counts.sum() for c in objs))
    print(f"{len(objs)} corpora, {total:,} tokens, references {[(r.name, int(r.counts.sum())) for r in ref_objs]}")
    times = {"full": [], "matched": []}
    for r in range(args.repeats):
        order = ["full", "matched"] if r % 2 == 0 else ["matched", "full"]
        for side in order:
            start = time.perf_counter()
            if side == "full":
                full(objs, ref_objs, decode)
            else:
                with_matched(objs, ref_objs, docs_by_name, decode)
            times[side].append(time.perf_counter() - start)
        print({k: [round(v, 2) for v in vs] for k, vs in times.items()}, flush=True)
    ratio = statistics.median(times["matched"]) / statistics.median(times["full"])
    memory = []
    for n in sorted({1, 4, args.corpora}):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), "--tokens-per-corpus", str(args.tokens_per_corpus)],
            capture_output=True,
            text=True,
            check=True,
        )
        memory.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(memory[-1], flush=True)
    result = {
        "machine": machine(),
        "corpora": len(objs),
        "tokens": total,
        "seconds": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "matched_over_full": round(ratio, 3),
        "memory": memory,
    }
    print(f"matched / full = {ratio:.2f}x (goal <= 2x)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "corpus_stats_matched.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
