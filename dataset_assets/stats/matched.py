"""Statistics at equal sizes, with intervals: a smaller corpus looks farther from any reference just
by being smaller (its rare tokens are missing), so KL, JS, distinct tokens and entropy are also
computed at one matched token budget for every compared corpus: the smallest compared corpus's size,
or a configured one. A corpus smaller than the budget is reported with its size and left out of the
matched comparison.

The interval is a bootstrap: `samples` draws of `budget` tokens, each scored like the full corpus;
the point is the median and the interval the 2.5th to 97.5th percentiles. A draw resamples whole
documents (with replacement, the last one thinned to the budget) when the corpus has at least
MIN_DOCUMENTS documents with their own counts (the counting assets store them): documents are what a
corpus is sampled in, and which rare tokens a corpus holds depends on which documents it holds. With
fewer (or counts stored before per-document counts existed) a draw resamples tokens from the unigram
distribution, which ignores that tokens of one document go together: those intervals are narrower
than they should be, and each row says which unit it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from dataset_assets.stats.divergence import DEFAULT_ALPHA

SAMPLES = 100
MIN_DOCUMENTS = 20
BLOCK = 25  # draws scored at once (memory: BLOCK x the corpus's distinct tokens)
LOW, HIGH = 2.5, 97.5
FIGURES = ("distinct_tokens", "entropy_bits")


@dataclass
class Matched:
    """One corpus at the matched budget: figure -> (median, low, high); per reference for KL and JS."""

    budget: int
    figures: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    by_reference: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)
    note: Optional[str] = None  # why the corpus has no matched figures
    unit: str = "tokens"  # what the bootstrap resampled: documents or tokens


def budget_for(token_counts: list[int], configured: Optional[int] = None) -> int:
    """The configured budget, else the smallest compared corpus's size (empty corpora aside)."""
    if configured:
        return int(configured)
    sizes = [t for t in token_counts if t > 0]
    return min(sizes) if sizes else 0


def _summary(values: np.ndarray) -> tuple[float, float, float]:
    return float(np.median(values)), float(np.percentile(values, LOW)), float(np.percentile(values, HIGH))


class _Reference:
    """A reference's probabilities, indexed for fast scoring against samples over a corpus's support."""

    def __init__(self, counts: np.ndarray, support: np.ndarray):
        self.index = np.flatnonzero(counts)
        self.p = counts[self.index] / counts.sum()
        where = np.searchsorted(support, self.index)
        where = np.minimum(where, len(support) - 1)
        self.in_support = support[where] == self.index  # reference tokens the corpus can draw
        self.position = where
        # JS runs over the union of the two supports: reference tokens outside the corpus's, and back.
        self.p_on_support = np.zeros(len(support))
        self.p_on_support[self.position[self.in_support]] = self.p[self.in_support]
        self.outside_mass = self.p[~self.in_support]


def _kl(ref: _Reference, draws: np.ndarray, budget: int, vocab: int, alpha: float) -> np.ndarray:
    """KL(reference || draw) in bits per draw, the draw smoothed like the full corpus."""
    counts = np.zeros((len(draws), len(ref.index)))
    counts[:, ref.in_support] = draws[:, ref.position[ref.in_support]]
    q = (counts + alpha) / (budget + alpha * vocab)
    with np.errstate(divide="ignore"):
        return (ref.p * (np.log2(ref.p) - np.log2(q))).sum(axis=1)


def _js(ref: _Reference, draws: np.ndarray, budget: int) -> np.ndarray:
    q = draws / budget
    on = ref.position[ref.in_support]  # where the reference has mass on the corpus's support
    p_on = ref.p[ref.in_support]
    log_m = np.log2((ref.p_on_support + q) / 2, out=np.full_like(q, -np.inf), where=(ref.p_on_support + q) > 0)
    kl_p = (p_on * (np.log2(p_on) - log_m[:, on])).sum(axis=1)
    with np.errstate(invalid="ignore"):
        kl_q = np.where(q > 0, q * (np.log2(q, out=np.zeros_like(q), where=q > 0) - log_m), 0.0).sum(axis=1)
    # Reference mass the corpus can never draw: there m = p / 2, so it adds p * log2(2) = p to KL(p || m).
    kl_p += ref.outside_mass.sum()
    return np.maximum(0.0, 0.5 * kl_p + 0.5 * kl_q)


class _Documents:
    """A corpus's documents as flat arrays over its support, for drawing whole documents fast."""

    def __init__(self, documents: list, support: np.ndarray):
        self.sizes = np.array([int(c.sum()) for _, c in documents])
        self.lengths = np.array([len(ids) for ids, _ in documents])
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.positions = np.searchsorted(support, np.concatenate([ids for ids, _ in documents]))
        self.counts = np.concatenate([c for _, c in documents]).astype(np.int64)

    def draw(self, rng: np.random.Generator, budget: int, width: int) -> np.ndarray:
        """Documents drawn with replacement until `budget` tokens, the last one thinned to fit."""
        parts: list[np.ndarray] = []
        total = 0
        mean = max(1.0, self.sizes.mean())
        while total < budget:
            more = rng.integers(0, len(self.sizes), size=int((budget - total) / mean * 1.2) + 4)
            reached = total + np.cumsum(self.sizes[more])
            stop = int(np.searchsorted(reached, budget))  # the first document that reaches the budget
            parts.append(more[: stop + 1])
            total = int(reached[min(stop, len(more) - 1)])
        picked = np.concatenate(parts)
        whole, last = picked[:-1], int(picked[-1])
        entries = self._entries(whole)
        row = np.bincount(self.positions[entries], weights=self.counts[entries], minlength=width)
        need = budget - int(self.sizes[whole].sum()) if len(whole) else budget
        span = slice(self.offsets[last], self.offsets[last] + self.lengths[last])
        # A document's token ids are distinct, so a plain indexed add is exact.
        row[self.positions[span]] += rng.multivariate_hypergeometric(self.counts[span], need)
        return row

    def _entries(self, docs: np.ndarray) -> np.ndarray:
        lengths = self.lengths[docs]
        if not len(docs) or not lengths.sum():
            return np.zeros(0, dtype=np.int64)
        starts = self.offsets[docs]
        shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return shift + np.arange(lengths.sum())

    def _entries_pos(self, docs: np.ndarray) -> np.ndarray:
        return self.positions[self._entries(docs)]


def matched(
    counts: np.ndarray,
    references: dict[str, np.ndarray],
    budget: int,
    samples: int = SAMPLES,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    documents: Optional[list] = None,
) -> Matched:
    """The corpus at `budget` tokens: bootstrap medians and intervals of every figure. `documents`:
    each document's (token ids, counts), resampled whole when there are at least MIN_DOCUMENTS."""
    total = int(counts.sum())
    if budget <= 0 or total < budget:
        return Matched(budget, note=f"{total:,} tokens: smaller than the matched budget of {budget:,}, left out")
    support = np.flatnonzero(counts)
    p = counts[support] / total
    docs = _Documents(documents, support) if documents and len(documents) >= MIN_DOCUMENTS else None
    if docs is not None and not docs.sizes.sum():
        docs = None  # documents without counts cannot be drawn to any budget
    refs = {name: _Reference(ref, support) for name, ref in references.items() if ref.sum() > 0}
    rng = np.random.default_rng(seed)
    collected: dict[str, list[np.ndarray]] = {"distinct_tokens": [], "entropy_bits": []}
    for name in refs:
        collected[f"kl:{name}"], collected[f"js:{name}"] = [], []
    for start in range(0, samples, BLOCK):
        size = min(BLOCK, samples - start)
        if docs is not None:
            draws = np.vstack([docs.draw(rng, budget, len(support)) for _ in range(size)]).astype(np.float64)
        else:
            draws = rng.multinomial(budget, p, size=size).astype(np.float64)
        _score(draws, budget, refs, len(counts), alpha, collected)
    out = Matched(budget, unit="documents" if docs is not None else "tokens")
    for key, parts in collected.items():
        values = np.concatenate(parts)
        if ":" in key:
            metric, name = key.split(":", 1)
            out.by_reference.setdefault(name, {})[metric] = _summary(values)
        else:
            out.figures[key] = _summary(values)
    return out


def _score(draws: np.ndarray, budget: int, refs: dict, vocab: int, alpha: float, collected: dict) -> None:
    collected["distinct_tokens"].append((draws > 0).sum(axis=1))
    shares = draws / budget
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log2(np.where(shares > 0, shares, 1))
    collected["entropy_bits"].append(-(shares * logs).sum(axis=1))
    for name, ref in refs.items():
        collected[f"kl:{name}"].append(_kl(ref, draws, budget, vocab, alpha))
        collected[f"js:{name}"].append(_js(ref, draws, budget))
