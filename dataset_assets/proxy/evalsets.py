"""Evaluation sets for proxy models, configured like the statistics references: files or folders
(EVAL_SETS, the run config, `--eval-sets`). A `.jsonl` file of `sentence_good` / `sentence_bad` pairs is
a set of minimal pairs (BLiMP); any other text file (or a folder of them) is held-out text scored in
bits per byte. Nothing is copied into the repository: the sets are read where they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dataset_assets.stats.references import reference_corpus_documents, reference_name

PAIR_FIELDS = ("sentence_good", "sentence_bad")


class EvalSetError(ValueError):
    """A missing, empty or malformed evaluation set; the message names it."""


@dataclass
class TextSet:
    name: str
    documents: list[str]
    kind: str = "text"


@dataclass
class PairSet:
    name: str
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (good, bad, phenomenon)
    kind: str = "pairs"


def _is_pairs(path: Path) -> bool:
    if not path.is_file() or not path.name.endswith(".jsonl"):
        return False
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        return all(k in json.loads(first) for k in PAIR_FIELDS)
    except ValueError:
        return False


def _pairs(path: Path) -> PairSet:
    out = PairSet(reference_name(path).removesuffix(".jsonl"))
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.pairs.append((row["sentence_good"], row["sentence_bad"], row.get("UID", "")))
            except (ValueError, KeyError) as exc:
                raise EvalSetError(
                    f"{path}: line {n} is not a minimal pair ({', '.join(PAIR_FIELDS)}): {exc}"
                ) from None
    return out


def load_eval_sets(locations: list[str]) -> list:
    """Every set under the given files and folders (a folder's entries, each a set), in name order.
    Raises EvalSetError for a location that is missing, or a set with no text."""
    if not locations:
        raise EvalSetError("no evaluation sets given: set EVAL_SETS (or --eval-sets) to files or folders of text")
    sets = []
    for location in locations:
        root = Path(location)
        if not root.exists():
            raise EvalSetError(f"evaluation set {location} does not exist (EVAL_SETS / --eval-sets)")
        entries = sorted(p for p in root.iterdir() if not p.name.startswith((".", "_"))) if root.is_dir() else [root]
        for path in entries:
            found = (
                _pairs(path)
                if _is_pairs(path)
                else TextSet(reference_name(path), list(reference_corpus_documents(path)))
            )
            if not (found.pairs if found.kind == "pairs" else any(d.strip() for d in found.documents)):
                raise EvalSetError(f"evaluation set {path} is empty: nothing to score")
            sets.append(found)
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise EvalSetError(f"evaluation sets with the same name: {sorted(n for n in names if names.count(n) > 1)}")
    return sorted(sets, key=lambda s: s.name)
