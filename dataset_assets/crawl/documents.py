"""Raw crawl records to document rows (the document contract), with every drop counted by reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional, Union

import pyarrow as pa

from dataset_assets.crawl import langid
from dataset_assets.crawl.extract import cap_text, content_hash, html_to_text, normalise_text, stable_id
from dataset_assets.crawl.readers import RawRecord, Skipped

DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("url", pa.string()),
        ("shard", pa.string()),
        ("crawl", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("content_hash", pa.string()),
        ("record_key", pa.string()),
        ("warc_record_id", pa.string()),
        ("offset", pa.int64()),
        ("date", pa.string()),
        ("source_file", pa.string()),
        ("format", pa.string()),
        ("chars", pa.int32()),
        ("capped", pa.bool_()),
    ]
)


@dataclass
class DocumentRules:
    min_chars: int = 200  # shorter extracted text is dropped as `too_short`
    max_chars: int = 100_000  # longer text is cut here and flagged `capped`
    languages: Optional[list[str]] = field(default_factory=lambda: ["en"])  # None keeps every language
    min_lang_score: float = 0.65  # below this the document is dropped as `language`


@dataclass
class ShardInfo:
    shard: str
    crawl: str
    source_file: str
    format: str


@dataclass
class DocumentStats:
    kept: int = 0
    drops: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    capped: int = 0
    text_chars: int = 0


def _text_of(record: RawRecord) -> str:
    if record.kind == "html":
        return html_to_text(record.payload, record.charset)
    return record.payload


def _document_batch(
    pending: list[tuple[RawRecord, str, bool]], info: ShardInfo, rules: DocumentRules, stats: DocumentStats
) -> Optional[pa.RecordBatch]:
    """Language-identify the pending texts (one batched call) and keep those in the wanted languages."""
    rows = []
    for (record, text, capped), (lang, score) in zip(pending, langid.identify([t for _, t, _ in pending])):
        stats.languages[lang] += 1
        if rules.languages is not None and (lang not in rules.languages or score < rules.min_lang_score):
            stats.drops["language"] += 1
            continue
        stats.kept += 1
        stats.capped += capped
        stats.text_chars += len(text)
        rows.append(
            {
                "id": stable_id(info.shard, record.key),
                "text": text,
                "url": record.url,
                "shard": info.shard,
                "crawl": info.crawl,
                "lang": lang,
                "lang_score": score,
                "content_hash": content_hash(text),
                "record_key": record.key,
                "warc_record_id": record.warc_record_id,
                "offset": record.offset,
                "date": record.date,
                "source_file": info.source_file,
                "format": info.format,
                "chars": len(text),
                "capped": capped,
            }
        )
    return pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA) if rows else None


def _clean_text(
    item: Union[RawRecord, Skipped], rules: DocumentRules, stats: DocumentStats
) -> Optional[tuple[str, bool]]:
    """(normalised text, capped) of a record, or None with its drop counted by name."""
    if isinstance(item, Skipped):
        stats.drops[item.reason] += 1
        return None
    try:
        text = normalise_text(_text_of(item))
    except Exception:  # a page the HTML parser cannot handle is one named drop, not a dead shard
        stats.drops["extract_error"] += 1
        return None
    if not text:
        stats.drops["empty_text"] += 1
        return None
    text, capped = cap_text(text, rules.max_chars)
    if len(text) < rules.min_chars:
        stats.drops["too_short"] += 1
        return None
    return text, capped


def build_documents(
    items: Iterable[Union[RawRecord, Skipped]],
    info: ShardInfo,
    rules: DocumentRules,
    stats: DocumentStats,
    batch_size: int = 512,
) -> Iterator[pa.RecordBatch]:
    """Extract, normalise and identify language; yields Arrow batches of kept documents.

    Duplicates are kept here, each with its content hash: removing them, exactly and near, inside a
    shard and across the crawl, is the order-independent work of the dedup stages.
    """
    pending: list[tuple[RawRecord, str, bool]] = []
    for item in items:
        cleaned = _clean_text(item, rules, stats)
        if cleaned is None:
            continue
        pending.append((item, *cleaned))
        if len(pending) >= batch_size:
            batch, pending = _document_batch(pending, info, rules, stats), []
            if batch is not None:
                yield batch
    if pending and (batch := _document_batch(pending, info, rules, stats)) is not None:
        yield batch
