"""DCLM-style fastText quality classifier: `__label__hq` reference text against `__label__cc` crawl text.

Training, held-out evaluation (precision, recall, ROC-AUC), calibration quantiles and batched
P(hq) scoring. Texts are folded the same way for training and scoring.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass

import numpy as np

HQ, CC = "__label__hq", "__label__cc"


def fold(text: str) -> str:
    """One line per document, as DCLM's classifier was trained and applied: newlines become spaces.

    Nothing else is changed, so a supplied DCLM model sees text the way it was trained on, and
    fastText's own C++ whitespace tokenizer does the rest.
    """
    return text.replace("\n", " ")


def segments(text: str, size: int = 3000) -> list[str]:
    """Cut long reference articles into paragraph-aligned pieces near crawl-document length."""
    if len(text) <= size * 1.5:
        return [text]
    out, current = [], ""
    for para in text.split("\n"):
        if current and len(current) + len(para) > size:
            out.append(current)
            current = ""
        current = f"{current}\n{para}" if current else para
    if current:
        out.append(current)
    return out


@dataclass
class TrainParams:
    word_ngrams: int = 2  # DCLM used word bigrams
    epoch: int = 10
    lr: float = 0.1
    dim: int = 64
    bucket: int = 200_000  # hashed n-gram buckets; 2M (fastText's default) makes an ~800 MB model
    min_count: int = 1
    holdout: float = 0.2
    seed: int = 0


def split_examples(hq: list[str], cc: list[str], holdout: float, seed: int):
    rng = random.Random(seed)
    examples = [(HQ, t) for t in hq] + [(CC, t) for t in cc]
    rng.shuffle(examples)
    n_test = max(1, int(len(examples) * holdout))
    return examples[n_test:], examples[:n_test]


def train(examples: list[tuple[str, str]], params: TrainParams, model_path: str):
    import fasttext

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        for label, text in examples:
            f.write(f"{label} {fold(text)}\n")
        train_file = f.name
    try:
        model = fasttext.train_supervised(
            input=train_file,
            wordNgrams=params.word_ngrams,
            epoch=params.epoch,
            lr=params.lr,
            dim=params.dim,
            bucket=params.bucket,
            minCount=params.min_count,
            thread=1,  # one thread makes training deterministic for a given seed and data
            seed=params.seed,
            verbose=0,
        )
    finally:
        os.unlink(train_file)
    model.save_model(model_path)
    return model


def load(model_path: str):
    import fasttext

    return fasttext.load_model(model_path)


def p_hq(model, texts: list[str], hq_label: str = HQ) -> np.ndarray:
    """P(hq) for each text, in one batched fastText call (two-label models: P(hq) = 1 - P(other)).
    A scorer with its own `scores(texts)` (the Hugging Face classifier) is asked directly."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    if hasattr(model, "scores"):
        return model.scores(texts)
    lines = [fold(t) for t in texts]
    if len(model.get_labels()) > 2:  # a multi-class model: read P(hq) among all labels
        labels, probs = model.predict(lines, k=-1)
        scores = [dict(zip(names, p)).get(hq_label, 0.0) for names, p in zip(labels, probs)]
        return np.array(scores, dtype=np.float32).clip(0, 1)
    labels, probs = model.predict(lines, k=1)
    top = np.fromiter((p[0] for p in probs), dtype=np.float32, count=len(texts))
    is_hq = np.fromiter((lab[0] == hq_label for lab in labels), dtype=bool, count=len(texts))
    return np.clip(np.where(is_hq, top, 1.0 - top), 0.0, 1.0)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC with tied scores given half credit."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    allscores = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allscores):  # average ranks over ties
        j = i
        while j + 1 < len(allscores) and allscores[j + 1] == allscores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def evaluate(model, heldout: list[tuple[str, str]], hq_label: str = HQ, threshold: float = 0.5) -> dict:
    labels = np.array([1 if lab == HQ else 0 for lab, _ in heldout])
    scores = p_hq(model, [t for _, t in heldout], hq_label)
    predicted = scores >= threshold
    tp = int((predicted & (labels == 1)).sum())
    fp = int((predicted & (labels == 0)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    return {
        "heldout_examples": int(len(labels)),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "roc_auc": roc_auc(labels, scores),
    }


def quantiles(scores: np.ndarray) -> list[float]:
    """101 quantiles (0th..100th percentile) of P(hq) over the calibration documents."""
    if len(scores) == 0:
        return [0.0] * 101
    return [float(q) for q in np.quantile(scores, np.linspace(0, 1, 101))]


def crawl_quantiles(
    scores: np.ndarray, crawls: list[str], shards: list[str], min_documents: int = 100, min_shards: int = 2
) -> dict[str, dict]:
    """Quantiles per crawl, for crawls with at least `min_documents` calibration documents from at
    least `min_shards` shards. A crawl that is one file (a name taken from the file) is not
    calibrated against itself: its top share would always pass, however poor the file."""
    scores = np.asarray(scores, dtype=np.float64)
    by_crawl: dict[str, list[int]] = {}
    for i, crawl in enumerate(crawls):
        by_crawl.setdefault(crawl or "", []).append(i)
    out = {}
    for crawl, idx in sorted(by_crawl.items()):
        n_shards = len({shards[i] for i in idx})
        if crawl and len(idx) >= min_documents and n_shards >= min_shards:
            out[crawl] = {"quantiles": quantiles(scores[idx]), "documents": len(idx), "shards": n_shards}
    return out


def calibrated_percentiles(
    scores: np.ndarray, crawls: list[str], default: list[float], by_crawl: dict[str, list[float]] | None = None
) -> np.ndarray:
    """Each score's percentile within its own crawl's calibration where there is one, else within
    the whole lake's, so a mixed landing of two crawls does not shift one crawl's thresholds."""
    out = percentile(scores, default)
    if by_crawl:
        names = np.asarray(crawls, dtype=object)
        for crawl, q in by_crawl.items():
            mask = names == crawl
            if mask.any():
                out[mask] = percentile(np.asarray(scores)[mask], q)
    return out


def percentile(scores: np.ndarray, calibration: list[float]) -> np.ndarray:
    """Percentile (0..100) of each score within the calibration distribution, interpolated."""
    q = np.asarray(calibration, dtype=np.float64)
    ranks = np.linspace(0, 100, len(q))
    # Quantiles repeat where many documents share a score: interpolating from both ends and
    # averaging gives such a score the middle of its tied percentile range.
    low_end = np.interp(scores, q, ranks)
    high_end = np.interp(-np.asarray(scores, dtype=np.float64), -q[::-1], ranks[::-1])
    return ((low_end + high_end) / 2).astype(np.float32)
