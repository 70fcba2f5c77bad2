"""Unigram statistics on count vectors (pure numpy, all in bits): entropy, Zipf, KL, JS, coverage."""

from __future__ import annotations

import numpy as np

# Lidstone smoothing of the corpus side of KL: q_i = (c_i + alpha) / (N + alpha * V). Small, so a
# corpus of a million tokens keeps over 99.9% of its own mass, yet a reference token the corpus
# never shows costs a finite log2(p_ref * (N + alpha V) / alpha) bits instead of infinity.
DEFAULT_ALPHA = 0.01
ZIPF_MAX_RANK = 10_000


def smoothing_note(alpha: float) -> str:
    return (
        f"KL(reference || corpus), corpus smoothed additively (Lidstone): q_i = (c_i + {alpha:g}) / (N + {alpha:g} * V)"
    )


def probabilities(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def smoothed(counts: np.ndarray, alpha: float) -> np.ndarray:
    total = counts.sum() + alpha * len(counts)
    return (counts + alpha) / total if total else np.zeros(len(counts))


def entropy_bits(counts: np.ndarray) -> float:
    p = probabilities(counts)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def zipf_exponent(counts: np.ndarray, max_rank: int = ZIPF_MAX_RANK) -> tuple[float, int]:
    """s in f(r) ~ r^-s, by least squares of log f on log r over ranks 1..min(max_rank, types).

    Returns (s, highest rank used); s is NaN below two distinct tokens. The tail beyond max_rank is
    left out because its many count-1 tokens form flat steps that bend a fit on a small corpus.
    """
    freq = np.sort(counts[counts > 0])[::-1][:max_rank].astype(np.float64)
    if len(freq) < 2:
        return float("nan"), len(freq)
    ranks = np.arange(1, len(freq) + 1, dtype=np.float64)
    slope, _ = np.polyfit(np.log(ranks), np.log(freq), 1)
    return float(-slope), len(freq)


def kl_terms(reference: np.ndarray, corpus: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Per-token p_ref * log2(p_ref / q_corpus); zero where the reference has no mass."""
    p, q = probabilities(reference), smoothed(corpus, alpha)
    terms = np.zeros(len(p))
    mask = p > 0
    with np.errstate(divide="ignore"):
        terms[mask] = p[mask] * (np.log2(p[mask]) - np.log2(q[mask]))
    return terms


def kl_bits(reference: np.ndarray, corpus: np.ndarray, alpha: float = DEFAULT_ALPHA) -> float:
    """KL(reference || corpus) in bits; infinite with alpha 0 when the corpus misses a reference token."""
    return float(kl_terms(reference, corpus, alpha).sum())


def js_bits(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits: symmetric, in [0, 1], finite without smoothing."""
    p, q = probabilities(a), probabilities(b)
    m = (p + q) / 2

    def kl_to_m(x: np.ndarray) -> float:
        mask = x > 0
        return float((x[mask] * np.log2(x[mask] / m[mask])).sum())

    return max(0.0, 0.5 * kl_to_m(p) + 0.5 * kl_to_m(q))


def coverage(reference: np.ndarray, corpus: np.ndarray) -> float:
    """Share of reference token mass on tokens the corpus contains at least once."""
    return float(probabilities(reference)[corpus > 0].sum())


def top_kl_tokens(reference: np.ndarray, corpus: np.ndarray, alpha: float = DEFAULT_ALPHA, k: int = 20) -> list[dict]:
    """The k tokens adding most to KL(reference || corpus): frequent in the reference, rare in the corpus."""
    terms = kl_terms(reference, corpus, alpha)
    p, q_obs = probabilities(reference), probabilities(corpus)
    top = np.argsort(-terms, kind="stable")[:k]
    return [
        {"token_id": int(i), "p_ref": float(p[i]), "p_corpus": float(q_obs[i]), "contribution": float(terms[i])}
        for i in top
        if terms[i] > 0
    ]


def support_shrinkage(source: np.ndarray, derived: np.ndarray) -> tuple[float, float]:
    """(share of the source's distinct tokens absent from the derived text, derived types / source types)."""
    source_types = int(np.count_nonzero(source))
    if not source_types:
        return float("nan"), float("nan")
    lost = int(np.count_nonzero((source > 0) & (derived == 0)))
    return lost / source_types, int(np.count_nonzero(derived)) / source_types


def describe(counts: np.ndarray) -> dict:
    """Statistics of one corpus on its own."""
    s, ranks = zipf_exponent(counts)
    return {
        "tokens": int(counts.sum()),
        "distinct_tokens": int(np.count_nonzero(counts)),
        "entropy_bits": entropy_bits(counts),
        "zipf_exponent": s,
        "zipf_ranks": f"1..{ranks}",
    }


def compare(reference: np.ndarray, corpus: np.ndarray, alpha: float = DEFAULT_ALPHA, k: int = 20) -> dict:
    """Statistics of a corpus against one reference."""
    if len(reference) != len(corpus):
        raise ValueError(f"count vectors of different vocabularies ({len(reference)} vs {len(corpus)} ids)")
    return {
        "kl_bits": kl_bits(reference, corpus, alpha),
        "js_bits": js_bits(reference, corpus),
        "coverage": coverage(reference, corpus),
        "top_kl_tokens": top_kl_tokens(reference, corpus, alpha, k),
    }
