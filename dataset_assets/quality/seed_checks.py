"""What the `seeds` checks judge, without Dagster: integrity (which may block the graph) and the
kept share of a shard against the crawl's (an outcome, which only warns)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dataset_assets.quality.seeds import KeepRule
from dataset_assets.quality.signals import signal_names


def validate_seeds(table: pa.Table, source_rows: int) -> tuple[bool, dict]:
    """Integrity only, which is what a blocking check may stop the graph for: no duplicate ids,
    scores in [0, 1], and every crawl_docs row present. How many seeds a shard keeps is an outcome
    (a shard of spam keeps none), judged by the non-blocking kept-share check instead."""
    ids = table.column("id").to_pylist()
    duplicates = len(ids) - len(set(ids))
    scores = table.column("quality_score").to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0)
    out_of_range = int(((scores < 0) | (scores > 1) | np.isnan(scores)).sum())
    kept = int(sum(table.column("kept").to_pylist()))
    lost = source_rows - table.num_rows
    ok = duplicates == 0 and out_of_range == 0 and lost == 0
    return ok, {
        "duplicate_ids": duplicates,
        "scores_out_of_range": out_of_range,
        "rows_lost": lost,
        "kept": kept,
        "documents": source_rows,
    }


def expected_kept_share(rule: KeepRule, quantiles: list[float]) -> float:
    """The share of the crawl the keep rule keeps before the Gopher rules: top_fraction, or the share
    of the crawl's calibration quantiles at or above min_score."""
    if rule.top_fraction is not None:
        return rule.top_fraction
    return float(np.mean(np.asarray(quantiles) >= rule.min_score))


def kept_share_check(kept: int, documents: int, expected: float, ratio: float, min_documents: int) -> tuple[bool, dict]:
    share = kept / documents if documents else 0.0
    judged = documents >= min_documents and expected > 0
    ok = not judged or share >= ratio * expected
    return ok, {
        "kept": kept,
        "documents": documents,
        "kept_share": round(share, 4),
        "crawl_kept_share": round(expected, 4),
        "warn_below": round(ratio * expected, 4),
        "judged": judged,
    }


def signals_described(signals: dict | None) -> str:
    """The stored combination in words, for a seeds run's metadata."""
    if not signals:
        return "the classifier alone"
    names = " + ".join(n.replace("_", " ") for n in signal_names(signals))
    return f"classifier + {names} ({signals['rule']} of percentiles)"
