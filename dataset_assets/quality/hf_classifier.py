"""A Hugging Face sequence-classification or regression model as the seed quality scorer (the
FineWeb-Edu classifier's shape: a tokenizer plus `AutoModelForSequenceClassification`), batched,
on a GPU when there is one. Scores are mapped into [0, 1] like fastText's P(hq), so calibration,
percentiles and the keep rule work the same for both."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from resources.hashing import file_sha256


@dataclass(frozen=True)
class HFScorerSpec:
    path: str  # local model directory (config.json, weights, tokenizer files)
    positive_label: Optional[str] = None  # classification: the label whose probability is the score (default: the last)
    # regression: raw output mapped from this range onto [0, 1] (FineWeb-Edu: 0-5)
    score_range: tuple[float, float] = (0.0, 5.0)
    max_length: int = 512  # tokens per document; longer ones are truncated
    batch_size: int = 32

    def to_json(self) -> dict:
        return {**asdict(self), "score_range": list(self.score_range)}


def load_pretrained(path: str, auto_model, what: str):
    """(tokenizer, model in eval mode, device) from a local model directory, the model on a GPU when
    there is one. `what` names the setting the path came from, for the error."""
    import torch
    from transformers import AutoTokenizer

    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{what} {path}: not a model directory (no config.json); give a local directory "
            "with the model's config, weights and tokenizer (save_pretrained writes one)"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return (
        AutoTokenizer.from_pretrained(str(directory)),
        auto_model.from_pretrained(str(directory)).to(device).eval(),
        device,
    )


def batches(tokenizer, texts: list[str], max_length: int, batch_size: int, device: str, cut: Optional[int] = None):
    """(positions, model inputs on `device`) per batch of the texts that have content, each text cut
    to `cut` characters, then tokenised and truncated to `max_length` tokens. Texts without content
    are left out: a zero-length input would fail inside the model, so callers leave their rows at 0."""
    todo = [i for i, t in enumerate(texts) if t and t.strip()]
    for start in range(0, len(todo), batch_size):
        index = todo[start : start + batch_size]
        enc = tokenizer(
            [texts[i][:cut] for i in index], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        yield index, {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


class HFClassifier:
    def __init__(self, spec: HFScorerSpec):
        from transformers import AutoModelForSequenceClassification

        self.spec = spec
        self.tokenizer, self.model, self.device = load_pretrained(
            spec.path, AutoModelForSequenceClassification, "hf_model_path"
        )
        labels = self.model.config.num_labels
        self.regression = labels == 1 or self.model.config.problem_type == "regression"
        if not self.regression:
            names = {str(v): int(k) for k, v in self.model.config.id2label.items()}
            if spec.positive_label is None:
                self.positive = labels - 1
            elif spec.positive_label in names:
                self.positive = names[spec.positive_label]
            else:
                raise ValueError(
                    f"hf_positive_label {spec.positive_label!r} is not a label of {spec.path}: its labels are "
                    f"{sorted(names)}"
                )
        lo, hi = spec.score_range
        if self.regression and not hi > lo:
            raise ValueError(f"hf_score_range {list(spec.score_range)}: the upper bound must be above the lower")

    def scores(self, texts: list[str]) -> np.ndarray:
        """A score in [0, 1] per text: the positive label's probability, or the regression output
        mapped from `score_range`."""
        import torch

        out = np.zeros(len(texts), dtype=np.float32)  # a text without content scores 0
        for index, enc in batches(self.tokenizer, texts, self.spec.max_length, self.spec.batch_size, self.device):
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            if self.regression:
                lo, hi = self.spec.score_range
                values = (logits[:, 0] - lo) / (hi - lo)
            else:
                values = torch.softmax(logits, dim=-1)[:, self.positive]
            out[index] = values.clamp(0, 1).cpu().numpy()
        return out


def model_digest(path: str) -> tuple[str, int]:
    """(content hash, bytes) of a model directory: every file's name and sha256, in name order."""
    root = Path(path).expanduser()
    h, size = hashlib.sha256(), 0
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(root).as_posix()}\x00{file_sha256(f)}\n".encode())
            size += f.stat().st_size
    return h.hexdigest(), size
