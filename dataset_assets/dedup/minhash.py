"""MinHash signatures of word n-grams, and the LSH band keys the bucket stage groups on.

Text is folded exactly as the exact content hash folds it (NFKC, casefold, every run of non-word
characters to one space), so "the same text" means the same thing in both stages. A document with
fewer words than the n-gram size has no shingles: it gets no signature and never joins a
near-duplicate cluster (it is never clustered on nothing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import xxhash

from dataset_assets.crawl.extract import fold

# Parquet footer key of a signature file: the parameters it was made with (see MinHashParams.key).
PARAMS_KEY = "minhash_params"
_MASK32 = np.uint64(0xFFFFFFFF)
_POSITION = np.random.default_rng(20260).integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


@dataclass(frozen=True)
class MinHashParams:
    """FineWeb's defaults: word 5-grams, 14 bands x 8 rows = 112 hash functions."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    def __post_init__(self):
        for name in ("ngram", "bands", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"minhash {name} must be at least 1, got {getattr(self, name)}")

    @property
    def permutations(self) -> int:
        return self.bands * self.rows

    def key(self) -> str:
        """What a signature file records; files with another key are never mixed with these."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_key(cls, key: str) -> "MinHashParams":
        return cls(**json.loads(key))

    def lsh_threshold(self) -> float:
        """The Jaccard similarity at which two documents share a bucket with probability about 1/2."""
        return (1.0 / self.bands) ** (1.0 / self.rows)


def shingles(text: str, ngram: int) -> np.ndarray:
    """Distinct 64-bit hashes of the word n-grams of the folded text (empty below `ngram` words)."""
    return word_shingles(fold(text).split(), ngram)


def word_shingles(words: list[str], ngram: int) -> np.ndarray:
    """`shingles` of a text already folded and split into words."""
    if len(words) < ngram:
        return np.zeros(0, dtype=np.uint64)
    # Each word hashed once; an n-gram's hash mixes its words' hashes with per-position odd
    # multipliers (arithmetic mod 2^64), so no n-gram string is ever built.
    hashes = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in words), dtype=np.uint64, count=len(words))
    count = len(words) - ngram + 1
    with np.errstate(over="ignore"):
        grams = hashes[:count] * _POSITION[0]
        for j in range(1, ngram):
            grams = grams + hashes[j : j + count] * _POSITION[j % len(_POSITION)]
    return np.unique(grams)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two shingle sets (as returned by `shingles`)."""
    if not len(a) or not len(b):
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


class MinHasher:
    """`permutations` multiply-shift hash functions h(x) = (a*x + b) >> 32 over 64-bit shingle
    hashes (a odd, arithmetic mod 2^64: a 2-universal family), their minimum per document."""

    def __init__(self, params: MinHashParams):
        self.params = params
        rng = np.random.default_rng(params.seed)
        self.a = rng.integers(1, 2**63, size=params.permutations, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=params.permutations, dtype=np.uint64)

    def signature(self, shingle_hashes: np.ndarray) -> np.ndarray:
        """uint32[permutations]; the caller never passes an empty set (no shingles, no signature)."""
        with np.errstate(over="ignore"):
            out = np.full(self.params.permutations, np.iinfo(np.uint64).max, dtype=np.uint64)
            for start in range(0, len(shingle_hashes), 4096):  # bounded memory for enormous documents
                block = shingle_hashes[start : start + 4096, None] * self.a[None, :] + self.b[None, :]
                np.minimum(out, (block >> np.uint64(32)).min(axis=0), out=out)
        return (out & _MASK32).astype(np.uint32)

    def band_keys(self, signature: np.ndarray) -> list[int]:
        """One 64-bit bucket key per band: a hash of the band's `rows` values and its index, so equal
        values in different bands never meet."""
        rows = self.params.rows
        return [
            int.from_bytes(
                hashlib.blake2b(
                    signature[i * rows : (i + 1) * rows].tobytes(), digest_size=8, salt=i.to_bytes(2, "little")
                ).digest(),
                "little",
            )
            for i in range(self.params.bands)
        ]
