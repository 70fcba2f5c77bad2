"""Stage 1, per shard: each document's exact key and LSH band keys (its MinHash signature, banded)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

from dataset_assets.crawl.extract import fold, folded_hash
from dataset_assets.dedup.minhash import MinHasher, MinHashParams, word_shingles

BASE_FIELDS = [
    ("id", pa.string()),
    ("shard", pa.string()),
    ("url", pa.string()),
    ("date", pa.string()),
    ("exact_key", pa.string()),  # the content hash; null when the folded text is empty
    ("shingles", pa.int32()),  # distinct word n-grams; 0 means no signature and no near-duplicate bands
]
READ_COLUMNS = ["id", "shard", "url", "date", "text"]


def band_column(band: int) -> str:
    return f"band_{band:02d}"


def signature_schema(params: MinHashParams) -> pa.Schema:
    return pa.schema(BASE_FIELDS + [(band_column(b), pa.uint64()) for b in range(params.bands)])


def signature_batches(batches: Iterable[pa.RecordBatch], params: MinHashParams) -> Iterator[pa.RecordBatch]:
    """crawl_docs batches (READ_COLUMNS) to signature batches, one row per document."""
    hasher, schema = MinHasher(params), signature_schema(params)
    for batch in batches:
        rows = batch.to_pydict()
        exact, counts = [], []
        bands: list[list] = [[] for _ in range(params.bands)]
        for text in rows["text"]:
            folded = fold(text)  # once: the exact key and the n-grams read the same folded text
            exact.append(folded_hash(folded) if folded else None)
            grams = word_shingles(folded.split(), params.ngram)
            counts.append(len(grams))
            keys = hasher.band_keys(hasher.signature(grams)) if len(grams) else [None] * params.bands
            for b, key in enumerate(keys):
                bands[b].append(key)
        columns = [rows["id"], rows["shard"], rows["url"], rows["date"], exact, counts, *bands]
        yield pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema)], schema=schema)


def counted_signature_batches(
    batches: Iterable[pa.RecordBatch], params: MinHashParams, counts: Counter, on_progress: Callable[[int], None]
) -> Iterator[pa.RecordBatch]:
    """`signature_batches`, counting `documents` and those `without_signature` (too short for an
    n-gram) into `counts` and reporting the documents signed so far after each batch."""
    for batch in signature_batches(batches, params):
        counts["documents"] += batch.num_rows
        counts["without_signature"] += sum(1 for n in batch.column("shingles").to_pylist() if n == 0)
        on_progress(counts["documents"])
        yield batch
