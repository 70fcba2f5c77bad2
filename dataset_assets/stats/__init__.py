"""Unigram statistics of corpora: the corpus x reference table built from summed count vectors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from dataset_assets.stats.divergence import DEFAULT_ALPHA, compare, describe, support_shrinkage

STATS_SCHEMA = pa.schema(
    [
        ("corpus", pa.string()),
        ("kind", pa.string()),  # natural, seeds, strategy, reference (mixture later)
        ("reference", pa.string()),  # null when no reference corpus is materialised
        ("partitions", pa.int64()),
        ("documents", pa.int64()),
        ("tokens", pa.int64()),
        ("distinct_tokens", pa.int64()),
        ("entropy_bits", pa.float64()),
        ("zipf_exponent", pa.float64()),
        ("zipf_ranks", pa.string()),
        ("kl_bits", pa.float64()),
        ("js_bits", pa.float64()),
        ("coverage", pa.float64()),
        ("smoothing_alpha", pa.float64()),
        ("source", pa.string()),
        ("support_lost", pa.float64()),
        ("types_ratio", pa.float64()),
        ("top_kl_tokens", pa.string()),  # JSON list: token_id, token, p_ref, p_corpus, contribution
        ("tokenizer", pa.string()),
        # The same figures at one matched token budget (stats/matched.py): bootstrap medians and 95% intervals.
        ("matched_tokens", pa.int64()),
        ("kl_bits_matched", pa.float64()),
        ("kl_bits_low", pa.float64()),
        ("kl_bits_high", pa.float64()),
        ("js_bits_matched", pa.float64()),
        ("js_bits_low", pa.float64()),
        ("js_bits_high", pa.float64()),
        ("distinct_tokens_matched", pa.float64()),
        ("distinct_tokens_low", pa.float64()),
        ("distinct_tokens_high", pa.float64()),
        ("entropy_bits_matched", pa.float64()),
        ("entropy_bits_low", pa.float64()),
        ("entropy_bits_high", pa.float64()),
        ("matched_note", pa.string()),  # why a corpus has no matched figures (smaller than the budget)
        ("matched_unit", pa.string()),  # what the bootstrap resampled: documents, or tokens without them
    ]
)
MATCHED_COLUMNS = [f.name for f in STATS_SCHEMA if f.name.endswith(("_matched", "_low", "_high", "_unit"))]


@dataclass
class Corpus:
    """One row family of the table: a name, its kind, and its counts summed over its partitions."""

    name: str
    kind: str
    counts: np.ndarray
    documents: int = 0
    partitions: list[dict[str, str]] = field(default_factory=list)  # Hive keys of the summed vectors
    source: Optional[Corpus] = None  # what it was derived from (a strategy's seeds), for support shrinkage
    asset: str = ""  # the unigram asset its vectors come from


def corpus_rows(
    corpora: list[Corpus],
    references: list[Corpus],
    decode: Callable[[int], str],
    tokenizer: str,
    alpha: float = DEFAULT_ALPHA,
    top_k: int = 20,
    matched_by_corpus: Optional[dict] = None,
) -> list[dict]:
    """One row per corpus x reference (one row with a null reference when there is none), with the
    matched-budget figures of `matched_by_corpus` (name -> stats.matched.Matched) where given."""
    rows = []
    for corpus in corpora:
        base = {
            "corpus": corpus.name,
            "kind": corpus.kind,
            "partitions": len(corpus.partitions),
            "documents": corpus.documents,
            **describe(corpus.counts),
            "smoothing_alpha": alpha,
            "source": None,
            "support_lost": None,
            "types_ratio": None,
            "tokenizer": tokenizer,
        }
        if corpus.source is not None:
            lost, ratio = support_shrinkage(corpus.source.counts, corpus.counts)
            base.update(source=corpus.source.name, support_lost=lost, types_ratio=ratio)
        found = (matched_by_corpus or {}).get(corpus.name)
        for reference in references or [None]:
            row = {**base, "reference": None, "kl_bits": None, "js_bits": None, "coverage": None, "top_kl_tokens": "[]"}
            if reference is not None:
                stats = compare(reference.counts, corpus.counts, alpha, top_k)
                top = [
                    {"token_id": t["token_id"], "token": decode(t["token_id"]), **t} for t in stats.pop("top_kl_tokens")
                ]
                row.update(reference=reference.name, **stats, top_kl_tokens=json.dumps(top, ensure_ascii=False))
            row.update(_matched_columns(found, reference.name if reference is not None else None))
            rows.append(row)
    return rows


def _matched_columns(found, reference: Optional[str]) -> dict:
    out: dict = {name: None for name in MATCHED_COLUMNS}
    out.update(matched_tokens=found.budget if found else None, matched_note=found.note if found else None)
    out["matched_unit"] = found.unit if found and not found.note else None
    if found is None or found.note:
        return out
    for figure in ("distinct_tokens", "entropy_bits"):
        out[f"{figure}_matched"], out[f"{figure}_low"], out[f"{figure}_high"] = found.figures[figure]
    for metric in ("kl", "js"):
        values = found.by_reference.get(reference, {}).get(metric) if reference else None
        if values is not None:
            out[f"{metric}_bits_matched"], out[f"{metric}_bits_low"], out[f"{metric}_bits_high"] = values
    return out


def rows_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=STATS_SCHEMA)
