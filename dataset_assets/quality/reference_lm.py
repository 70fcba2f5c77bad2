"""A second quality signal, CCNet-style: how well a small language model of clean reference text
predicts a document. A word bigram model interpolated with a unigram model, trained on the same
reference text as the classifier; a document's score is its mean log-probability per word (higher is
closer to the reference; its perplexity is exp(-score)).

It sees what fastText's bag of n-grams does not weigh the same way: whether the words follow each
other as in edited prose. Scoring is vectorised (a regex, a dict lookup per word, numpy for the
rest), so it costs about what the fastText call does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from itertools import chain, repeat

import numpy as np

WORD = re.compile(r"[a-z]+|\d+")
START, UNKNOWN = 0, 1  # reserved ids: sentence start and any word the reference never had
EMPTY_SCORE = -20.0  # a document with no words: far below any real text
# Scoring reads a document's first this many characters (about 150 words): the mean over a prefix
# estimates the whole document's, at a bounded cost per document. 1,000 halves the cost of 2,000 at
# the same agreement with people (benchmarks/README.md). Training reads whole texts; a model stores the
# prefix its scores (and so its calibration) read; one written before it was stored read LEGACY_SCORE_CHARS.
SCORE_CHARS = 1000
LEGACY_SCORE_CHARS = 2000


TABLE_BITS = 22
_MIX = np.uint64(0x9E3779B97F4A7C15)


MAX_PROBES = 64


def _slot(keys: np.ndarray) -> np.ndarray:
    """Fibonacci hashing of bigram keys into the table."""
    return ((keys.astype(np.uint64) * _MIX) >> np.uint64(64 - TABLE_BITS)).astype(np.int64)


def _hash_table(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Linear probing, vectorised: each round places the keys whose next slot is free. Returns the
    table and the longest probe any key needed (lookups try that many slots)."""
    mask = (1 << TABLE_BITS) - 1
    table_keys = np.full(mask + 1, -1, dtype=np.int64)
    table_counts = np.zeros(mask + 1, dtype=np.float32)
    base = _slot(keys)
    pending = np.arange(len(keys))
    probes = 0
    while len(pending):
        if probes == MAX_PROBES:
            raise ValueError(f"reference LM: {len(pending)} bigrams found no slot in {MAX_PROBES} probes")
        step, probes = probes, probes + 1
        slots = (base[pending] + step) & mask
        free = table_keys[slots] == -1
        taken_slots, first = np.unique(slots[free], return_index=True)
        chosen = pending[free][first]
        table_keys[taken_slots], table_counts[taken_slots] = keys[chosen], counts[chosen]
        placed = np.zeros(len(keys), dtype=bool)
        placed[chosen] = True
        pending = pending[~placed[pending]]
    return table_keys, table_counts, probes


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class ReferenceLM:
    """Interpolated bigram model: P(w | v) = lam * c(v, w) / c(v) + (1 - lam) * P_uni(w), with the
    unigram add-half smoothed over the vocabulary plus one unknown word. The unknown word's mass is
    shared among the rare word types it stood for in training, so a page of made-up tokens does not
    score like a page of one frequent word."""

    def __init__(
        self,
        vocab: list[str],
        unigram: np.ndarray,
        bigram_keys: np.ndarray,
        bigram_counts: np.ndarray,
        context: np.ndarray,
        lam: float = 0.6,
        unknown_types: int = 1,
        score_chars: int = SCORE_CHARS,
    ):
        self.vocab = vocab
        self.score_chars = int(score_chars)
        self.unknown_types = max(1, int(unknown_types))
        self.ids = {w: i for i, w in enumerate(vocab)}
        self.unigram, self.bigram_keys, self.bigram_counts, self.context = unigram, bigram_keys, bigram_counts, context
        self.lam = lam
        # Bigram counts in an open-addressing hash table (keys checked): a few array reads per word
        # instead of a binary search over every bigram.
        self.table_keys, self.table_counts, self.probes = _hash_table(bigram_keys, bigram_counts)
        self.p_uni = (unigram + 0.5) / (unigram.sum() + 0.5 * len(unigram))

    @classmethod
    def train(cls, texts: Iterable[str], min_count: int = 2, lam: float = 0.6) -> "ReferenceLM":
        docs = [words(t) for t in texts]
        counts = Counter(w for doc in docs for w in doc)
        vocab = ["<s>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_count)
        ids = {w: i for i, w in enumerate(vocab)}
        n = len(vocab)
        unigram = np.zeros(n, dtype=np.float64)
        context = np.zeros(n, dtype=np.float64)
        pairs: Counter = Counter()
        for doc in docs:
            seq = np.array([START] + [ids.get(w, UNKNOWN) for w in doc], dtype=np.int64)
            np.add.at(unigram, seq[1:], 1)
            np.add.at(context, seq[:-1], 1)
            pairs.update((seq[:-1] * n + seq[1:]).tolist())
        keys = np.array(sorted(pairs), dtype=np.int64)
        rare = sum(1 for c in counts.values() if c < min_count)
        return cls(
            vocab, unigram, keys, np.array([pairs[k] for k in keys.tolist()], dtype=np.float64), context, lam, rare
        )

    def score(self, text: str) -> float:
        return float(self.scores([text])[0])

    def scores(self, texts: list[str]) -> np.ndarray:
        """Mean log-probability per word of each text, the whole batch in one vectorised pass."""
        get = self.ids.get
        chars = self.score_chars
        seqs = [list(map(get, words(t[:chars]), repeat(UNKNOWN))) for t in texts]
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        out = np.full(len(texts), EMPTY_SCORE, dtype=np.float32)
        if not lengths.sum():
            return out
        # One flat sequence, each text led by START; a pair is (previous word, word) for every word.
        flat = np.fromiter(
            chain.from_iterable(chain((START,), s) for s in seqs), dtype=np.int64, count=int(lengths.sum()) + len(seqs)
        )
        target = np.flatnonzero(flat != START)
        prev, word = flat[target - 1], flat[target]
        log_p = self._log_p(prev, word)
        has_words = lengths > 0
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[has_words]
        out[has_words] = (np.add.reduceat(log_p, starts) / lengths[has_words]).astype(np.float32)
        return out

    def _log_p(self, prev: np.ndarray, word: np.ndarray) -> np.ndarray:
        keys = prev * len(self.vocab) + word
        base, mask = _slot(keys), (1 << TABLE_BITS) - 1
        pair = np.zeros(len(keys), dtype=np.float64)
        active = np.arange(len(keys))
        for step in range(self.probes):  # an empty slot ends a key's search: it is not in the table
            slots = (base[active] + step) & mask
            found = self.table_keys[slots]
            hit = found == keys[active]
            pair[active[hit]] = self.table_counts[slots[hit]]
            active = active[~hit & (found != -1)]
            if not len(active):
                break
        ctx = self.context[prev]
        p_bigram = np.divide(pair, ctx, out=np.zeros_like(pair), where=ctx > 0)
        p = self.lam * p_bigram + (1 - self.lam) * self.p_uni[word]
        return np.log(np.where(word == UNKNOWN, p / self.unknown_types, p))

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                vocab=np.array(self.vocab, dtype=object).astype(str),
                unigram=self.unigram,
                bigram_keys=self.bigram_keys,
                bigram_counts=self.bigram_counts,
                context=self.context,
                lam=np.array([self.lam]),
                unknown_types=np.array([self.unknown_types]),
                score_chars=np.array([self.score_chars]),
            )

    @classmethod
    def load(cls, path: str) -> "ReferenceLM":
        with np.load(path, allow_pickle=False) as z:
            chars = int(z["score_chars"][0]) if "score_chars" in z.files else LEGACY_SCORE_CHARS
            return cls(
                z["vocab"].tolist(),
                z["unigram"],
                z["bigram_keys"],
                z["bigram_counts"],
                z["context"],
                float(z["lam"][0]),
                int(z["unknown_types"][0]),
                chars,
            )
