"""Counting one lake partition's texts into a unigram vector and writing it, without Dagster: what
every `*_unigrams` asset does for each of its partitions (the asset records it in the catalog)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dataset_assets.stats.references import reference_corpus_documents
from dataset_assets.stats.unigrams import (
    COUNTS_SCHEMA,
    DOCUMENTS_SCHEMA,
    UnigramCounts,
    count_unigrams,
    counts_batches,
    counts_metadata,
    document_batches,
)

DOCUMENTS_SUFFIX = "_documents"  # <asset>_documents: each document's counts, beside the vector


@dataclass
class WrittenCounts:
    asset: str
    partition: dict
    counted: UnigramCounts
    written: object  # resources.lake.Written: rows, bytes, data_version of the stored vector
    seconds: float
    tokenizer: str
    vocab_size: int
    fingerprint: str

    def summary(self) -> dict:
        """The plain numbers a materialisation reports."""
        c, s = self.counted, self.seconds
        return {
            "documents": c.documents,
            "tokens": c.tokens,
            "distinct_tokens": c.types,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "seconds": round(s, 3),
            "tokens_per_s": round(c.tokens / s, 1) if s > 0 else 0.0,
        }

    def data_version(self) -> str:
        # The same counts under another tokenizer are other data.
        return hashlib.sha256(f"{self.written.data_version}:{self.fingerprint}".encode()).hexdigest()[:16]


def count_into_lake(
    lake,
    tok,
    batch_size: int,
    asset: str,
    partition: Mapping[str, str],
    texts: Callable[[list[int]], Iterator[list[str]]],
    on_progress: Callable[[int, str], None],
) -> WrittenCounts:
    """Count the token ids of `texts(read)` (which counts the rows it reads into `read[0]`) with the
    loaded tokenizer `tok` and write the vector to `asset`'s partition. `on_progress(rows or
    documents so far, a line of counts)` after every batch."""
    read, documents = [0], []
    start = time.perf_counter()
    counted = count_unigrams(
        texts(read),
        tok.encode_batch,
        tok.vocab_size,
        batch_size,
        on_batch=lambda c: on_progress(read[0] or c.documents, f"{c.documents:,} documents, {c.tokens:,} tokens"),
        documents=documents,
    )
    seconds = time.perf_counter() - start
    meta = counts_metadata(tok.name, tok.vocab_size, tok.fingerprint, counted.documents)
    # The documents first: a vector, which status and corpus_stats read, is never there without them.
    lake.write_partition(f"{asset}{DOCUMENTS_SUFFIX}", partition, document_batches(documents), DOCUMENTS_SCHEMA, meta)
    written = lake.write_partition(asset, partition, counts_batches(counted.counts), COUNTS_SCHEMA, meta)
    return WrittenCounts(asset, dict(partition), counted, written, seconds, tok.name, tok.vocab_size, tok.fingerprint)


def reference_text_batches(source: Path, batch_size: int, read: list[int]) -> Iterator[list[str]]:
    """A reference corpus's documents in batches, counting them into `read[0]`."""
    batch: list[str] = []
    for doc in reference_corpus_documents(source):
        read[0] += 1
        batch.append(doc)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    yield batch


def run_totals(sums: dict, per_shard: dict) -> dict:
    """A many-partition run's rate over the run, its tokenizer once; distinct tokens do not add up
    over partitions, so each partition's count stays in per_shard only."""
    first = next(iter(per_shard.values()))
    totals = {k: v for k, v in sums.items() if k != "distinct_tokens"}
    rate = round(sums["tokens"] / sums["seconds"], 1) if sums["seconds"] > 0 else 0.0
    return {**totals, "tokenizer": first["tokenizer"], "vocab_size": first["vocab_size"], "tokens_per_s": rate}
