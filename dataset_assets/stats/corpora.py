"""How the lake's unigram count vectors become corpora for `corpus_stats`, and what it writes beside them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Optional

import numpy as np
import pyarrow.compute as pc

from dataset_assets.stats import Corpus
from dataset_assets.stats.synthetic import mixture_quality, quality_png, strategy_quality
from dataset_assets.stats.unigrams import StoredCounts, counts_from_table, documents_from_table
from resources.lake import Lake

STATS = "corpus_stats"


def lake_texts(
    lake: Lake, asset_name: str, partition: Mapping[str, str], kept_only: bool, rows_read: list[int]
) -> Iterator[list[str]]:
    columns = ["text", "kept"] if kept_only else ["text"]
    for batch in lake.iter_partition_batches(asset_name, partition, columns=columns):
        rows_read[0] += batch.num_rows
        if kept_only:
            batch = batch.filter(pc.fill_null(batch.column("kept"), False))
        yield [t for t in batch.column("text").to_pylist() if t]


# -- corpus_stats ----------------------------------------------------------------------------------
# How the lake's count vectors become corpora: (unigram asset, kind, corpus name of a partition).
# Another kind of corpus (mixtures) is one more line here and, if derived, one entry in SOURCES.
FAMILIES: list[tuple[str, str, Callable[[Mapping[str, str]], str]]] = [
    ("natural_unigrams", "natural", lambda keys: "natural"),
    ("seed_unigrams", "seeds", lambda keys: "seeds"),
    ("rephrased_unigrams", "strategy", lambda keys: keys["strategy"]),
    ("reference_unigrams", "reference", lambda keys: keys["reference"]),
    # Written by the mixtures asset for every version it publishes.
    ("mixture_unigrams", "mixture", lambda keys: f"{keys['mixture']}@{keys['version']}"),
]
# kind -> the family its support shrinkage is measured against, summed over the same shards.
SOURCES = {"strategy": "seeds"}


def stored_vectors(lake: Lake, asset_name: str) -> Iterator[tuple[dict[str, str], StoredCounts]]:
    """Every count vector of an asset with its Hive keys, one at a time."""
    for keys in lake.stored_partitions(asset_name):
        yield keys, counts_from_table(lake.read_partition(asset_name, keys))


class StaleVectors(Exception):
    pass


def gather_corpora(lake: Lake, tokenizer_fingerprint: str, vocab_size: int) -> list[Corpus]:
    """Corpora in FAMILIES order, each the sum of its partitions' vectors; memory O(vocab x corpora)."""
    corpora: dict[tuple[str, str], Corpus] = {}
    stale: list[str] = []
    for asset_name, kind, name_of in FAMILIES:
        for keys, stored in stored_vectors(lake, asset_name):
            if stored.fingerprint != tokenizer_fingerprint or stored.vocab_size != vocab_size:
                stale.append(f"{asset_name} {keys} (tokenizer {stored.tokenizer}, vocab {stored.vocab_size})")
                continue
            name = name_of(keys)
            corpus = corpora.setdefault(
                (kind, name), Corpus(name, kind, np.zeros(vocab_size, dtype=np.int64), asset=asset_name)
            )
            corpus.counts += stored.counts.counts
            corpus.documents += stored.counts.documents
            corpus.partitions.append(keys)
    if stale:
        raise StaleVectors(stale)
    ordered = sorted(corpora.values(), key=lambda c: ([k for _, k, _ in FAMILIES].index(c.kind), c.name))
    attach_sources(lake, ordered, vocab_size)
    return ordered


def document_counts(lake: Lake, corpus: Corpus) -> Optional[list]:
    """Every document's (token ids, counts) of a corpus, from `<asset>_documents` beside its vectors;
    None when a partition has none (counted before they were stored)."""
    from dataset_assets.stats.counting import DOCUMENTS_SUFFIX

    out: list = []
    for keys in corpus.partitions:
        name = f"{corpus.asset}{DOCUMENTS_SUFFIX}"
        if not lake.has_partition(name, keys):
            return None
        out.extend(documents_from_table(lake.read_partition(name, keys)))
    return out


def attach_sources(lake: Lake, corpora: list[Corpus], vocab_size: int) -> None:
    """Give each derived corpus its source summed over exactly the shards it covers."""
    assets = {kind: asset_name for asset_name, kind, _ in FAMILIES}
    summed: dict[tuple[str, frozenset], Corpus] = {}  # strategies usually share one shard set: one pass
    for corpus in corpora:
        source_kind = SOURCES.get(corpus.kind)
        if source_kind is None:
            continue
        shards = frozenset(p["shard"] for p in corpus.partitions)
        if (source_kind, shards) not in summed:
            source = Corpus(source_kind, source_kind, np.zeros(vocab_size, dtype=np.int64))
            for keys, stored in stored_vectors(lake, assets[source_kind]):
                if keys.get("shard") in shards:
                    source.counts += stored.counts.counts
                    source.documents += stored.counts.documents
                    source.partitions.append(keys)
            summed[(source_kind, shards)] = source
        source = summed[(source_kind, shards)]
        if len(source.partitions) == len(shards):  # a shard without source counts would inflate the shrinkage
            corpus.source = source


def top_tokens_markdown(rows: list[dict], per_row: int = 5) -> str:
    lines = ["| corpus | reference | tokens most under-represented (p_ref vs p_corpus) |", "|---|---|---|"]
    for r in rows:
        if r["reference"] and r["corpus"] != r["reference"]:
            tops = json.loads(r["top_kl_tokens"])[:per_row]
            cell = ", ".join(f"`{t['token']!r}` ({t['p_ref']:.2%} vs {t['p_corpus']:.2%})" for t in tops)
            lines.append(f"| {r['corpus']} | {r['reference']} | {cell.replace('|', '&#124;')} |")
    return "\n".join(lines)


def synthetic_quality(lake: Lake) -> tuple[dict, bytes]:
    """Per-strategy and per-mixture-version quality of the generated text, from the measures every
    finished rephrased partition wrote (rephrased_unigrams is upstream of this asset, and the
    manifests it reads come with those partitions); written beside the corpus table."""
    from dataset_assets.mixtures.pull import finished_versions, mixture_names
    from dataset_assets.rephrase.store import finished_partitions

    strategies = strategy_quality(finished_partitions(lake))
    by_strategy = {r["strategy"]: r for r in strategies}
    versions = [(name, v, m) for name in mixture_names(lake) for v, m in finished_versions(lake, name).items()]
    quality = {"strategies": strategies, "mixtures": mixture_quality(versions, by_strategy)}
    plot = quality_png(strategies)
    lake.put_json([STATS, "synthetic_quality.json"], quality)
    lake.put_bytes([STATS, "quality.png"], plot)
    return quality, plot
