"""More than one quality signal, combined the way Nemotron-CC does: each signal is placed at its
percentile within the crawl's own calibration (per crawl where the crawl spans enough shards), the
percentiles are combined by a stated rule, and the combined value is calibrated again, so the keep
rule's `top_fraction` still keeps that share of a crawl.

Rules: `mean` (the default: the mean of the signals' percentiles) or `max` (Nemotron-CC's: a
document is as good as its best signal says). On the development set in benchmarks/ `mean` agreed
with human judgment better than `max` or either signal alone (benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dataset_assets.quality import classifier
from dataset_assets.quality.reference_lm import ReferenceLM

RULES = ("mean", "max")
REFERENCE_LM = "reference_lm"


@dataclass
class SignalCalibration:
    """Quantiles of one score over the calibration sample: the whole lake's and per crawl."""

    quantiles: list[float]
    by_crawl: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, scores: np.ndarray, crawls: list[str], shards: list[str], min_documents: int, min_shards: int) -> "SignalCalibration":
        per_crawl = classifier.crawl_quantiles(scores, crawls, shards, min_documents, min_shards)
        return cls(classifier.quantiles(np.asarray(scores)), {c: v["quantiles"] for c, v in per_crawl.items()})

    def percentiles(self, scores: np.ndarray, crawls: list[str]) -> np.ndarray:
        return classifier.calibrated_percentiles(scores, crawls, self.quantiles, self.by_crawl)

    def to_json(self) -> dict:
        return {"quantiles": self.quantiles, "by_crawl": self.by_crawl}

    @classmethod
    def from_json(cls, data: dict) -> "SignalCalibration":
        return cls(list(data["quantiles"]), {k: list(v) for k, v in (data.get("by_crawl") or {}).items()})


def combine(percentiles: list[np.ndarray], rule: str) -> np.ndarray:
    if rule not in RULES:
        raise ValueError(f"quality signals: combine rule must be one of {RULES}, got {rule!r}")
    stacked = np.vstack([np.asarray(p, dtype=np.float32) for p in percentiles])
    return stacked.mean(axis=0) if rule == "mean" else stacked.max(axis=0)


@dataclass
class CombinedScore:
    """The reference LM, its calibration, the rule, and the calibration of the combined value."""

    lm: ReferenceLM
    lm_calibration: SignalCalibration
    rule: str
    combined: SignalCalibration

    def place(self, fasttext_percentiles: np.ndarray, texts: list[str], crawls: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(the LM's score per text, the combined percentile per text)."""
        lm_scores = self.lm.scores(texts)
        mixed = combine([fasttext_percentiles, self.lm_calibration.percentiles(lm_scores, crawls)], self.rule)
        return lm_scores, self.combined.percentiles(mixed, crawls)

    def to_json(self) -> dict:
        return {"rule": self.rule, REFERENCE_LM: self.lm_calibration.to_json(), "combined": self.combined.to_json()}


def fit_combined(lm: ReferenceLM, fasttext: SignalCalibration, fasttext_scores: np.ndarray, texts: list[str], crawls: list[str],
                 shards: list[str], rule: str, min_documents: int, min_shards: int) -> tuple[CombinedScore, np.ndarray]:
    """Calibrate the LM and the combined value on the calibration sample; (the result, the LM scores)."""
    lm_scores = lm.scores(texts)
    lm_calibration = SignalCalibration.fit(lm_scores, crawls, shards, min_documents, min_shards)
    mixed = combine([fasttext.percentiles(fasttext_scores, crawls), lm_calibration.percentiles(lm_scores, crawls)], rule)
    combined = SignalCalibration.fit(mixed, crawls, shards, min_documents, min_shards)
    return CombinedScore(lm, lm_calibration, rule, combined), lm_scores


def from_json(lm: ReferenceLM, data: dict) -> CombinedScore:
    return CombinedScore(lm, SignalCalibration.from_json(data[REFERENCE_LM]), data["rule"], SignalCalibration.from_json(data["combined"]))
