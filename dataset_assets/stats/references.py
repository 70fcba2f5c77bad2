"""Reference corpora for the statistics: one per file or folder under STATS_REFERENCES, read as documents.

(Not the quality classifier's reference text: that is `quality.reference`.)
"""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterator
from pathlib import Path

from dataset_assets.quality.reference import wikitext_articles
from resources.paths import sanitise_shard_key

MAX_DOCUMENT_CHARS = 1 << 20  # a longer blank-line block is cut at a line boundary; counts are unaffected


def reference_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".txt", ".text", ".raw"):
        name = name.removesuffix(suffix)
    return sanitise_shard_key(name)


def reference_sources(directory: str) -> dict[str, Path]:
    """Partition key -> file or folder. A missing directory means no references, not an error at import."""
    root = Path(directory)
    if not root.is_dir():
        return {}
    entries = sorted(p for p in root.iterdir() if not p.name.startswith((".", "_")))
    return {reference_name(p): p for p in entries}


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def blank_line_documents(lines: Iterator[str], max_chars: int = MAX_DOCUMENT_CHARS) -> Iterator[str]:
    block: list[str] = []
    size = 0
    for line in lines:
        if line.strip():
            block.append(line)
            size += len(line)
        if block and (not line.strip() or size >= max_chars):
            yield "".join(block).strip()
            block, size = [], 0
    if block:
        yield "".join(block).strip()


def reference_corpus_documents(path: Path) -> Iterator[str]:
    """Documents of a reference file (or every file of a folder), streamed.

    WikiText files are detokenised into articles (` @-@ `, ` , ` and `<unk>` undone) so the divergence
    measures language, not WikiText's preprocessing; other text splits on blank lines.
    """
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    )
    for file in files:
        with _open_text(file) as f:
            yield from (wikitext_articles(f) if "wikitext" in file.name.lower() else blank_line_documents(f))
