"""Fitting the further quality signals for `quality_classifier`, without Dagster: which signals are
on, the crawl sample the opt-in embedding signal trains on, and the calibration of every signal and
of their combination (`signals.fit_combined`), with the entry the calibration file stores."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Optional

import numpy as np

from dataset_assets.quality.embedding import EMBEDDING, EmbeddingSignal
from dataset_assets.quality.hf_classifier import HFScorerSpec
from dataset_assets.quality.reference_lm import ReferenceLM
from dataset_assets.quality.signals import (
    LENGTH,
    LENGTH_CAP,
    REFERENCE_LM,
    RULES,
    CombinedScore,
    SignalCalibration,
    fit_combined,
)
from dataset_assets.quality.store import EMBEDDING_MODEL

DESCRIBED = {
    REFERENCE_LM: "mean log-probability per word",
    LENGTH: f"words, up to {LENGTH_CAP:,}",
    EMBEDDING: "sentence encoder + regression (logit)",
}


def extra_signal_names(reference_lm: bool, document_length: bool, embedding: bool) -> list[str]:
    """The further signals switched on, in the order they are combined."""
    return [
        name for name, on in ((REFERENCE_LM, reference_lm), (LENGTH, document_length), (EMBEDDING, embedding)) if on
    ]


def embedding_sample(crawl: tuple, scores: np.ndarray, hq: list[str], limit: int, seed: int):
    """(positions of the crawl sample the embedding signal trains on, those documents as (texts,
    crawls, shards), their fastText scores, the reference segments): at most `limit` of each."""
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(crawl[0])), min(len(crawl[0]), limit)))
    sample = tuple([column[i] for i in picked] for column in crawl)
    reference = rng.sample(hq, min(len(hq), limit))
    return picked, sample, scores[picked], reference


def check_rule(rule: str) -> None:
    """Refuse an unknown combination rule before any signal is computed."""
    if rule not in RULES:
        raise ValueError(f"quality_classifier: combine must be one of {RULES}, got {rule!r}")


@dataclass
class ObtainedModel:
    """The classifier `quality_classifier` scores with: supplied or trained here, with the examples
    its metrics are measured on."""

    model: object  # a fastText model or an HFClassifier
    heldout: list  # (label, text) examples the metrics are measured on
    source: str
    train_examples: int = 0
    hf_spec: Optional[HFScorerSpec] = None

    def calibration(
        self, hq_label: str, quantiles: list, by_crawl: dict, documents: int, digest: str, signals: dict, metrics: dict
    ) -> dict:
        """What `calibration.json` holds: the model (kind, source, content digest), its quantiles over
        the lake and per crawl, the further signals' entry and the held-out metrics."""
        hf_spec = self.hf_spec
        return {
            "kind": "huggingface" if hf_spec else "fasttext",
            **({"huggingface": hf_spec.to_json()} if hf_spec else {}),
            "hq_label": hq_label,
            "quantiles": quantiles,
            "by_crawl": by_crawl,
            "calibration_documents": documents,
            "source": self.source,
            "model_sha256": digest,
            **signals,
            **metrics,
        }


@dataclass
class FittedSignals:
    """The further signals fitted on the calibration sample: the combination, the reference LM (to be
    stored beside the model when on) and the calibration file's `signals` entry."""

    names: list[str]
    combined: CombinedScore
    lm: Optional[ReferenceLM]
    entry: dict

    def quantile_summary(self) -> dict[str, dict[str, float]]:
        """p10 / p50 / p90 of each signal's calibration, for the asset's metadata."""
        return {
            name: {f"p{p}": round(self.combined.calibration[name].quantiles[p], 3) for p in (10, 50, 90)}
            for name in self.names
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.entry, sort_keys=True).encode()).hexdigest()[:16]


def fit_signals(
    names: list[str],
    hq: list[str],
    fasttext: SignalCalibration,
    scores: np.ndarray,
    crawl: tuple,
    rule: str,
    min_documents: int,
    min_shards: int,
    embedding: Optional[EmbeddingSignal] = None,
    known: Optional[dict[str, np.ndarray]] = None,
) -> FittedSignals:
    """Train the reference LM on the reference segments (when it is on) and calibrate each signal and
    the combined value on the crawl sample `crawl` = (texts, crawls, shards), whose classifier scores
    are `scores` and whose classifier calibration is `fasttext`."""
    check_rule(rule)
    texts, crawls, shards = crawl
    lm = ReferenceLM.train(hq) if REFERENCE_LM in names else None
    combined = fit_combined(
        names, lm, fasttext, scores, texts, crawls, shards, rule, min_documents, min_shards, embedding, known
    )
    entry = combined.to_json()
    if embedding is not None:
        entry[EMBEDDING_MODEL] = embedding.to_json()
    return FittedSignals(names, combined, lm, entry)
