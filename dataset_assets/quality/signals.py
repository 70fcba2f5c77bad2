"""More than one quality signal, combined the way Nemotron-CC does: each signal is placed at its
percentile within the crawl's own calibration (per crawl where the crawl spans enough shards), the
percentiles are combined by a stated rule, and the combined value is calibrated again, so the keep
rule's `top_fraction` still keeps that share of a crawl.

Signals besides the classifier: `reference_lm` (a bigram LM of the reference text, CCNet-style: mean
log-probability per word), `length` (the words a document has, counted up to LENGTH_CAP: people
judge a page by what it has to say, and a page too short to say anything is rarely what they keep),
and the opt-in `embedding` (a sentence encoder's view of how the page opens, quality/embedding.py).

Rules: `mean` (the default: the mean of the signals' percentiles) or `max` (Nemotron-CC's: a
document is as good as its best signal says). On the development set in benchmarks/ the `mean` of
all three agreed with human judgment better than `max`, than the classifier with the LM, or than
any signal alone, and about as well as the classifier with length (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from dataset_assets.quality import classifier
from dataset_assets.quality.embedding import EMBEDDING, EmbeddingSignal
from dataset_assets.quality.reference_lm import ReferenceLM

RULES = ("mean", "max")
REFERENCE_LM = "reference_lm"
LENGTH = "length"
SIGNALS = (REFERENCE_LM, LENGTH, EMBEDDING)
# Words counted per document, at most: beyond about 2,000 words a page is not judged better for its
# length. They are counted in the first LENGTH_CHARS characters, so the cost per document is bounded.
LENGTH_CAP = 2000
LENGTH_CHARS = 8 * LENGTH_CAP


def length_scores(texts: list[str]) -> np.ndarray:
    """Words per document (whitespace-separated, as the Gopher rules count them), up to LENGTH_CAP."""
    return np.fromiter(
        (min(len(t[:LENGTH_CHARS].split()), LENGTH_CAP) for t in texts), dtype=np.float32, count=len(texts)
    )


@dataclass
class SignalCalibration:
    """Quantiles of one score over the calibration sample: the whole lake's and per crawl."""

    quantiles: list[float]
    by_crawl: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, scores: np.ndarray, crawls: list[str], shards: list[str], min_documents: int, min_shards: int
    ) -> "SignalCalibration":
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


def scorers(
    names: list[str], lm: Optional[ReferenceLM], embedding: Optional[EmbeddingSignal] = None
) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """The score function of each named signal (the reference LM's and the embedding's need their models)."""
    out = {}
    for name in names:
        if name == REFERENCE_LM:
            if lm is None:
                raise ValueError("quality signals: reference_lm needs the reference LM")
            out[name] = lm.scores
        elif name == EMBEDDING:
            if embedding is None:
                raise ValueError("quality signals: embedding needs the trained embedding signal")
            out[name] = embedding.scores
        elif name == LENGTH:
            out[name] = length_scores
        else:
            raise ValueError(f"quality signals: unknown signal {name!r}; known: {SIGNALS}")
    return out


@dataclass
class CombinedScore:
    """The extra signals (name -> score function and calibration), the rule, and the calibration of
    the combined value."""

    score: dict[str, Callable[[list[str]], np.ndarray]]
    calibration: dict[str, SignalCalibration]
    rule: str
    combined: SignalCalibration

    def mix(self, fasttext_percentiles: np.ndarray, scores: dict[str, np.ndarray], crawls: list[str]) -> np.ndarray:
        """The combined value before its own calibration: the rule over every signal's percentile."""
        return _mix(self.calibration, self.rule, fasttext_percentiles, scores, crawls)

    def place(
        self, fasttext_percentiles: np.ndarray, texts: list[str], crawls: list[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(each signal's score per text, the combined percentile per text)."""
        scores = {name: fn(texts) for name, fn in self.score.items()}
        return scores, self.combined.percentiles(self.mix(fasttext_percentiles, scores, crawls), crawls)

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "order": list(self.score),
            **{n: c.to_json() for n, c in self.calibration.items()},
            "combined": self.combined.to_json(),
        }


def fit_combined(
    names: list[str],
    lm: Optional[ReferenceLM],
    fasttext: SignalCalibration,
    fasttext_scores: np.ndarray,
    texts: list[str],
    crawls: list[str],
    shards: list[str],
    rule: str,
    min_documents: int,
    min_shards: int,
    embedding: Optional[EmbeddingSignal] = None,
    known: Optional[dict[str, np.ndarray]] = None,
) -> CombinedScore:
    """Calibrate each named signal and the combined value on the calibration sample (`known`: scores
    of these texts already computed, by signal name)."""
    score, known = scorers(names, lm, embedding), known or {}
    scores = {name: known[name] if name in known else fn(texts) for name, fn in score.items()}
    calibration = {
        name: SignalCalibration.fit(values, crawls, shards, min_documents, min_shards)
        for name, values in scores.items()
    }
    mixed = _mix(calibration, rule, fasttext.percentiles(fasttext_scores, crawls), scores, crawls)
    return CombinedScore(
        score, calibration, rule, SignalCalibration.fit(mixed, crawls, shards, min_documents, min_shards)
    )


def _mix(
    calibration: dict[str, SignalCalibration],
    rule: str,
    fasttext_percentiles: np.ndarray,
    scores: dict[str, np.ndarray],
    crawls: list[str],
) -> np.ndarray:
    placed = [calibration[name].percentiles(values, crawls) for name, values in scores.items()]
    return combine([fasttext_percentiles, *placed], rule)


def signal_names(data: dict) -> list[str]:
    """The further signals a stored combination uses, in order; one written before `order` was
    stored (quality_classifier code version 2) combined the reference LM alone."""
    return list(data.get("order") or [REFERENCE_LM])


def from_json(lm: Optional[ReferenceLM], data: dict, embedding: Optional[EmbeddingSignal] = None) -> CombinedScore:
    """A stored combination (see signal_names for one written before `order` was stored)."""
    names = signal_names(data)
    return CombinedScore(
        scorers(names, lm, embedding),
        {n: SignalCalibration.from_json(data[n]) for n in names},
        data["rule"],
        SignalCalibration.from_json(data["combined"]),
    )
