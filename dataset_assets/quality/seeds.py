"""Seed selection, per document: P(hq), the further signals, their combined calibrated percentile,
Gopher rules and the keep rule."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
from dataset_assets.quality import classifier
from dataset_assets.quality.heuristics import GopherRules, gopher_reason
from dataset_assets.quality.signals import EMBEDDING, LENGTH, REFERENCE_LM, CombinedScore

SEED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("quality_score", pa.float32()))
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("quality_percentile", pa.float32()))
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("kept", pa.bool_()))
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("drop_reason", pa.string()))
# The id of the duplicate cluster's representative this document was folded into (else null).
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("duplicate_of", pa.string()))
# The second signal's own score: the reference LM's mean log-probability per word (null when the
# classifier was calibrated without it). quality_score stays fastText's (or the supplied model's) P(hq).
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("lm_score", pa.float32()))
# The length signal's own score: the document's words, counted up to 2,000 (null without it).
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("length_score", pa.float32()))
# The opt-in embedding signal's own score: its regression's logit (null without it).
SEED_SCHEMA = SEED_SCHEMA.append(pa.field("embedding_score", pa.float32()))

# Parquet footer key of a seeds part file: the fingerprint of its kept set (see kept_fingerprint).
KEPT_FINGERPRINT = "kept_fingerprint"
FINGERPRINT_COLUMNS = ["id", "text", "kept", "quality_percentile"]


def kept_fingerprint(rows: Iterable[Mapping]) -> str:
    """What a rephrasing of these seeds depends on: the kept ids, their text and their percentile
    (strategies route by it). A retrained classifier or a changed keep rule changes it; a new
    DataVersion from an identical kept set does not."""
    kept = sorted(
        (r["id"], hashlib.sha256(r["text"].encode()).hexdigest(), f"{float(r['quality_percentile'] or 0.0):.4f}")
        for r in rows
        if r.get("kept")
    )
    h = hashlib.sha256()
    for row in kept:
        h.update("\x00".join(row).encode() + b"\n")
    return h.hexdigest()[:16]


def table_kept_fingerprint(table: pa.Table) -> str:
    """kept_fingerprint of a seeds table, reading only the kept rows' fingerprint columns."""
    return kept_fingerprint(table.select(FINGERPRINT_COLUMNS).filter(table.column("kept")).to_pylist())


@dataclass
class KeepRule:
    top_fraction: Optional[float] = 0.1  # keep the calibrated top share (DCLM kept about 10%)
    min_score: Optional[float] = None  # or keep P(hq) >= this; set either, not both

    def __post_init__(self):
        if (self.top_fraction is None) == (self.min_score is None):
            raise ValueError("seeds keep rule: set exactly one of top_fraction and min_score")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ValueError(f"seeds keep rule: top_fraction must be in (0, 1], got {self.top_fraction}")

    def keeps(self, scores: np.ndarray, percentiles: np.ndarray) -> np.ndarray:
        if self.min_score is not None:
            return scores >= self.min_score
        return percentiles >= 100.0 * (1.0 - self.top_fraction)


def select_seeds(
    docs: pa.RecordBatch,
    model,
    calibration: list[float],
    rule: KeepRule,
    gopher: GopherRules,
    hq_label: str = classifier.HQ,
    by_crawl: Optional[dict[str, list[float]]] = None,
    duplicates: Optional[Mapping[str, tuple[str, str]]] = None,
    combined: Optional[CombinedScore] = None,
) -> pa.RecordBatch:
    """Every input document with its score, percentile (against its crawl's calibration where the
    classifier has one, else the whole lake's), `kept` flag and `drop_reason`. With `combined`, the
    percentile is that of the combined signals, and `lm_score`, `length_score` and `embedding_score`
    hold those signals' own scores (null for a signal the classifier was calibrated without).

    `duplicates` maps a removed document's id to (`duplicate` | `near_duplicate`, representative
    id), from the dedup clusters; that reason comes first, before the quality and Gopher rules."""
    texts = docs.column("text").to_pylist()
    scores = classifier.p_hq(model, texts, hq_label)
    crawls = docs.column("crawl").to_pylist()
    percentiles = classifier.calibrated_percentiles(scores, crawls, calibration, by_crawl)
    signal_scores: dict[str, np.ndarray] = {}
    if combined is not None:
        signal_scores, percentiles = combined.place(percentiles, texts, crawls)
    quality_ok = rule.keeps(scores, percentiles)
    # The quality rule runs first (one batched fastText call); the Gopher rules then run only on
    # what it keeps, so a document's drop_reason is the first filter it failed in that order.
    reasons = [None if ok else "low_quality" for ok in quality_ok]
    for i in np.flatnonzero(quality_ok):
        reasons[i] = gopher_reason(texts[i], gopher)
    duplicates = duplicates or {}
    folded_into = [None] * len(texts)
    for i, doc_id in enumerate(docs.column("id").to_pylist()):
        if doc_id in duplicates:
            reasons[i], folded_into[i] = duplicates[doc_id]
    kept = [r is None for r in reasons]
    columns = {name: docs.column(name) for name in DOCUMENT_SCHEMA.names}
    columns.update(
        quality_score=pa.array(scores, pa.float32()),
        quality_percentile=pa.array(percentiles, pa.float32()),
        kept=pa.array(kept, pa.bool_()),
        drop_reason=pa.array(reasons, pa.string()),
        duplicate_of=pa.array(folded_into, pa.string()),
        lm_score=_signal_column(signal_scores.get(REFERENCE_LM), len(texts)),
        length_score=_signal_column(signal_scores.get(LENGTH), len(texts)),
        embedding_score=_signal_column(signal_scores.get(EMBEDDING), len(texts)),
    )
    return pa.RecordBatch.from_pydict(columns, schema=SEED_SCHEMA)


def _signal_column(scores: Optional[np.ndarray], rows: int) -> pa.Array:
    return pa.array(scores if scores is not None else [None] * rows, pa.float32())
