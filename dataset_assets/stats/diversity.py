"""Diversity and faithfulness per corpus, side by side at one matched size: natural text, the kept
seeds and each strategy's kept rephrasings, each sampled down to the same number of words (the
smallest corpus's), so no figure differs just because one corpus is bigger.

Per corpus: distinct-1..4 (unique word n-grams over all), the zlib compression ratio of the text,
self-similarity (for each document, the highest MinHash Jaccard of its word 5-grams to another
document of the corpus: the mean, and the share above 0.5), the share of each reference's word
vocabulary the corpus covers, and for rephrasings the mean share of the source's content words kept
and the unsupported-number rate (numbers above 10 the source lacks, over all numbers above 10).

Documents are chosen by a hash of their id (the same ones on every run), a share of each partition
in proportion to the budget, so a corpus of ten million words is read but never held.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import xxhash

from dataset_assets.crawl.extract import fold
from dataset_assets.dedup.minhash import MinHasher, MinHashParams, word_shingles
from dataset_assets.rephrase.partition_checks import distinct_n

PARAMS = MinHashParams(ngram=5, bands=14, rows=8, seed=7)
MAX_SELF_SIMILARITY_DOCS = 2000  # documents compared pairwise for self-similarity (a sample above)
OVERSAMPLE = 1.3
COLUMNS = ["text", "source_word_share", "numbers", "unsupported_numbers"]


@dataclass
class Sampled:
    name: str
    kind: str
    texts: list[str]
    words: int
    source_word_share: list[float]
    numbers: int = 0
    unsupported: int = 0


def _picked(ids: list, share: float) -> list[bool]:
    """A fixed share of documents by a hash of their id: the same ones on every run."""
    cut = int(min(1.0, share) * 2**64) - 1
    return [xxhash.xxh3_64_intdigest(str(i).encode()) <= cut for i in ids]


def sample_corpus(lake, name: str, kind: str, asset: str, partitions: list[dict], share: float) -> list[dict]:
    """About `share` of the corpus's documents (kept rows only where the asset has `kept`), in
    partition order: each a dict of COLUMNS."""
    out = []
    for keys in partitions:
        table = lake.read_partition(asset, keys)
        if "kept" in table.column_names:
            table = table.filter(pc.fill_null(table.column("kept"), False))
        ids = table.column("id").to_pylist() if "id" in table.column_names else list(range(table.num_rows))
        rows = table.select([c for c in COLUMNS if c in table.column_names]).to_pylist()
        out += [row for row, chosen in zip(rows, _picked(ids, share)) if chosen and row["text"]]
    return out


def cut(name: str, kind: str, rows: list[dict], budget: int) -> Sampled:
    """The first `budget` words of the sampled documents (the last one cut)."""
    out = Sampled(name, kind, [], 0, [])
    for row in rows:
        if out.words >= budget:
            break
        take = row["text"].split()[: budget - out.words]
        out.texts.append(" ".join(take))
        out.words += len(take)
        if row.get("source_word_share") is not None:
            out.source_word_share.append(row["source_word_share"])
        out.numbers += row.get("numbers") or 0
        out.unsupported += row.get("unsupported_numbers") or 0
    return out


def self_similarity(texts: list[str], max_docs: int = MAX_SELF_SIMILARITY_DOCS) -> tuple[float, float]:
    """(mean highest MinHash Jaccard to another document, share above 0.5) over at most `max_docs`
    documents with a 5-gram."""
    hasher = MinHasher(PARAMS)
    signatures = []
    for text in texts:
        grams = word_shingles(fold(text).split(), PARAMS.ngram)
        if len(grams):
            signatures.append(hasher.signature(grams))
        if len(signatures) >= max_docs:
            break
    if len(signatures) < 2:
        return 0.0, 0.0
    sig = np.vstack(signatures)
    best = np.zeros(len(sig))
    for start in range(0, len(sig), 128):
        block = (sig[start : start + 128, None, :] == sig[None, :, :]).mean(axis=2)
        for i in range(block.shape[0]):
            block[i, start + i] = 0.0  # not itself
        best[start : start + 128] = block.max(axis=1)
    return float(best.mean()), float((best > 0.5).mean())


def words_of(text: str) -> set[str]:
    return set(fold(text).split())


def measures(sampled: Sampled, reference_vocab: dict[str, set[str]], max_docs: int = MAX_SELF_SIMILARITY_DOCS) -> dict:
    text = "\n".join(sampled.texts)
    raw = text.encode("utf-8")
    vocab = words_of(text)
    mean_sim, share_sim = self_similarity(sampled.texts, max_docs)
    out = {
        "corpus": sampled.name,
        "kind": sampled.kind,
        "matched_words": sampled.words,
        "documents": len(sampled.texts),
        **distinct_n(sampled.texts),
        "compression_ratio": round(len(zlib.compress(raw, 6)) / len(raw), 4) if raw else 0.0,
        "self_similarity_mean": round(mean_sim, 4),
        "self_similarity_above_half": round(share_sim, 4),
        "reference_vocabulary_covered": {
            name: round(len(vocab & ref) / len(ref), 4) for name, ref in reference_vocab.items() if ref
        },
        "source_word_share": round(float(np.mean(sampled.source_word_share)), 4) if sampled.source_word_share else None,
        "unsupported_number_rate": round(sampled.unsupported / sampled.numbers, 4) if sampled.numbers else None,
    }
    return out


SOURCE_ASSETS = {"natural": "crawl_docs", "seeds": "seeds", "strategy": "rephrased"}


def diversity_table(lake, corpora: list, matched_tokens: int, references: dict[str, list[str]]) -> list[dict]:
    """One row per natural, seeds and strategy corpus at the smallest one's word count (corpora as
    corpus_stats gathers them: their token counts set how much of each to read)."""
    compared = [c for c in corpora if c.kind in SOURCE_ASSETS and c.counts.sum() > 0]
    if not compared or matched_tokens <= 0:
        return []
    sampled = {}
    for c in compared:
        share = OVERSAMPLE * matched_tokens / float(c.counts.sum())
        sampled[c.name] = (c, sample_corpus(lake, c.name, c.kind, SOURCE_ASSETS[c.kind], c.partitions, share))
    budget = min(sum(len(r["text"].split()) for r in rows) for _, rows in sampled.values())
    vocab = {name: set().union(*(words_of(t) for t in texts)) if texts else set() for name, texts in references.items()}
    return [measures(cut(c.name, c.kind, rows, budget), vocab) for c, rows in sampled.values()]


def rows_markdown(rows: list[dict]) -> str:
    head = (
        "| corpus | words | distinct-2 | distinct-4 | compression | self-similarity (mean, >0.5) | "
        "reference vocabulary covered | source words kept | unsupported numbers |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        covered = ", ".join(f"{k} {v:.1%}" for k, v in r["reference_vocabulary_covered"].items()) or "-"
        kept = "-" if r["source_word_share"] is None else f"{r['source_word_share']:.2f}"
        numbers = "-" if r["unsupported_number_rate"] is None else f"{r['unsupported_number_rate']:.1%}"
        lines.append(
            f"| {r['corpus']} | {r['matched_words']:,} | {r['distinct_2']:.3f} | {r['distinct_4']:.3f} | "
            f"{r['compression_ratio']:.3f} | {r['self_similarity_mean']:.3f}, {r['self_similarity_above_half']:.1%} | "
            f"{covered} | {kept} | {numbers} |"
        )
    return "\n".join(lines)


def diversity_png(rows: list[dict]) -> bytes:
    """The corpora side by side: distinct-2, compression ratio, self-similarity above 0.5."""
    from dataset_assets.stats.plots import _png, plt

    panels = [
        ("distinct_2", "distinct-2 (higher: more varied)"),
        ("compression_ratio", "zlib ratio (lower: more repetitive)"),
        ("self_similarity_above_half", "share with a near twin (MinHash > 0.5)"),
    ]
    names = [r["corpus"] for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), max(3.0, 0.4 * len(names) + 1.5)), sharey=True)
    colours = {"natural": "tab:green", "seeds": "tab:blue", "strategy": "tab:orange"}
    for ax, (key, title) in zip(axes, panels):
        ax.barh(names, [r[key] for r in rows], color=[colours.get(r["kind"], "tab:gray") for r in rows])
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].invert_yaxis()
    fig.suptitle(f"Diversity at {rows[0]['matched_words']:,} words each" if rows else "Diversity")
    return _png(fig)
