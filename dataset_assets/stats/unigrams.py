"""Unigram counts: a text stream to one vocab-sized int64 vector, stored as nonzero Parquet rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

COUNTS_SCHEMA = pa.schema([("token_id", pa.int32()), ("count", pa.int64())])
# Each document's own counts (sparse), beside a partition's vector: the units the matched-size
# statistics resample (stats/matched.py). Stored as `<asset>_documents` partitions.
DOCUMENTS_SCHEMA = pa.schema([("document", pa.int32()), ("token_id", pa.int32()), ("count", pa.int32())])
ROWS_PER_BATCH = 65_536


@dataclass
class UnigramCounts:
    counts: np.ndarray  # int64, one entry per vocabulary id
    documents: int = 0

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def types(self) -> int:
        return int(np.count_nonzero(self.counts))


def rebatch(text_batches: Iterable[Sequence[str]], size: int) -> Iterator[list[str]]:
    """Texts regrouped into lists of `size`, whatever sizes the source yields."""
    pending: list[str] = []
    for batch in text_batches:
        pending.extend(batch)
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def count_unigrams(
    text_batches: Iterable[Sequence[str]],
    encode_batch: Callable[[list[str]], list[list[int]]],
    vocab_size: int,
    batch_size: int = 1024,
    on_batch: Optional[Callable[[UnigramCounts], None]] = None,
    documents: Optional[list] = None,
) -> UnigramCounts:
    """Count token ids of every text; memory is one vocab vector plus one batch, whatever the stream
    length. With `documents` (a list), each text's own (token ids, counts) is appended to it."""
    result = UnigramCounts(np.zeros(vocab_size, dtype=np.int64))
    for texts in rebatch(text_batches, batch_size):
        ids = encode_batch(texts)
        total = sum(map(len, ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=total)
        if total and int(flat.max()) >= vocab_size:
            raise ValueError(
                f"token id {int(flat.max())} is outside the vocabulary of {vocab_size}: wrong vocab_size for this "
                "tokenizer"
            )
        result.counts += np.bincount(flat, minlength=vocab_size)
        result.documents += len(texts)
        if documents is not None:
            documents.extend(np.unique(np.asarray(doc, dtype=np.int32), return_counts=True) for doc in ids)
        if on_batch:
            on_batch(result)
    return result


def counts_batches(counts: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The nonzero entries as (token_id, count) record batches."""
    ids = np.flatnonzero(counts).astype(np.int32)
    for start in range(0, len(ids), ROWS_PER_BATCH):
        part = ids[start : start + ROWS_PER_BATCH]
        yield pa.record_batch([pa.array(part), pa.array(counts[part].astype(np.int64))], schema=COUNTS_SCHEMA)


def document_batches(documents: list) -> Iterator[pa.RecordBatch]:
    """Per-document counts as (document, token_id, count) record batches."""
    for start in range(0, len(documents), 1024):
        part = documents[start : start + 1024]
        if not part:
            return
        doc = np.concatenate([np.full(len(ids), start + i, dtype=np.int32) for i, (ids, _) in enumerate(part)])
        ids = np.concatenate([ids for ids, _ in part]).astype(np.int32)
        counts = np.concatenate([c for _, c in part]).astype(np.int32)
        yield pa.record_batch([pa.array(doc), pa.array(ids), pa.array(counts)], schema=DOCUMENTS_SCHEMA)


def documents_from_table(table: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
    """Back to one (token ids, counts) pair per document, in document order."""
    if not table.num_rows:
        return []
    doc = table.column("document").to_numpy()
    order = np.argsort(doc, kind="stable")
    doc, ids, counts = doc[order], table.column("token_id").to_numpy()[order], table.column("count").to_numpy()[order]
    bounds = np.flatnonzero(np.diff(doc)) + 1
    return list(zip(np.split(ids, bounds), np.split(counts, bounds)))


def counts_metadata(tokenizer_name: str, vocab_size: int, fingerprint: str = "", documents: int = 0) -> dict[str, str]:
    """Schema metadata that makes a stored vector self-describing: which vocabulary its ids index."""
    return {
        "tokenizer": tokenizer_name,
        "vocab_size": str(vocab_size),
        "tokenizer_fingerprint": fingerprint,
        "documents": str(documents),
    }


def counts_table(counts: np.ndarray, tokenizer_name: str, fingerprint: str = "", documents: int = 0) -> pa.Table:
    table = pa.Table.from_batches(list(counts_batches(counts)), schema=COUNTS_SCHEMA)
    return table.replace_schema_metadata(counts_metadata(tokenizer_name, len(counts), fingerprint, documents))


@dataclass(frozen=True)
class StoredCounts:
    counts: UnigramCounts
    tokenizer: str
    fingerprint: str
    vocab_size: int


def counts_from_table(table: pa.Table) -> StoredCounts:
    """Back to a dense vector; the vocab size comes from the schema metadata, not from the largest id."""
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "vocab_size" not in meta:
        raise ValueError("unigram table has no vocab_size in its schema metadata: it was not written by counts_table")
    vocab = int(meta["vocab_size"])
    counts = np.zeros(vocab, dtype=np.int64)
    ids = table.column("token_id").to_numpy()
    np.add.at(counts, ids, table.column("count").to_numpy())
    return StoredCounts(
        UnigramCounts(counts, int(meta.get("documents", 0))),
        meta.get("tokenizer", ""),
        meta.get("tokenizer_fingerprint", ""),
        vocab,
    )
