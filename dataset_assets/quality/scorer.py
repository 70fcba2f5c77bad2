"""The seed scorer a `seeds` run loads once: the quality model, its calibration and the combined
signals, applied to one shard's documents in batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import pyarrow as pa

from dataset_assets.quality.heuristics import GopherRules
from dataset_assets.quality.seeds import KeepRule, select_seeds
from dataset_assets.quality.store import load_combined, load_quality_model

BATCH_ROWS = 2048


class SeedScorer:
    """Raises `QualityModelMissing`, `ValueError` (a stored signal that cannot be used) or
    `ImportError` when the lake's quality model cannot be loaded."""

    def __init__(self, lake, tmp: str):
        self.model, calibration = load_quality_model(lake, tmp)
        self.combined = load_combined(lake, calibration, tmp)
        self.by_crawl = {crawl: c["quantiles"] for crawl, c in (calibration.get("by_crawl") or {}).items()}
        self.calibration = calibration

    def score(
        self,
        docs: pa.Table,
        rule: KeepRule,
        gopher: GopherRules,
        duplicates,
        on_progress: Optional[Callable[[int], None]] = None,
    ) -> list[pa.RecordBatch]:
        """The shard's seed rows, batch by batch (`on_progress(documents scored so far)` after each)."""
        scored, done = [], 0
        for batch in docs.to_batches(max_chunksize=BATCH_ROWS):
            scored.append(
                select_seeds(
                    batch,
                    self.model,
                    self.calibration["quantiles"],
                    rule,
                    gopher,
                    self.calibration["hq_label"],
                    self.by_crawl,
                    duplicates,
                    self.combined,
                )
            )
            done += batch.num_rows
            if on_progress:
                on_progress(done)
        return scored
