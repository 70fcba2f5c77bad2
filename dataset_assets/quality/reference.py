"""High-quality reference text for the classifier: WikiText, Wikipedia XML dumps, plain text, JSONL.

Each file in the reference folder becomes a list of documents. Markup that would let a classifier
tell the source by its format rather than its prose (WikiText tokenisation, wiki markup) is removed.
"""

from __future__ import annotations

import bz2
import gzip
import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

_WT_HEADING = re.compile(r"^ ?= (?!=)(.+?) (?<!=)= ?$")
_WT_ARTEFACTS = [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" <unk>", ""), ("<unk>", "")]
_WT_SPACING = re.compile(r" ([.,;:!?)\]'])|([(\[]) ")


def _detokenise_wikitext(line: str) -> str:
    for a, b in _WT_ARTEFACTS:
        line = line.replace(a, b)
    line = _WT_SPACING.sub(lambda m: m.group(1) or m.group(2), line)
    line = re.sub(r"= = (.+?) = =", r"\1", line)
    return re.sub(r"\s+", " ", line).strip()


def wikitext_articles(lines: Iterator[str]) -> Iterator[str]:
    """WikiText-2/103: a top-level ` = Title = ` line starts an article."""
    current: list[str] = []
    for raw in lines:
        if _WT_HEADING.match(raw.rstrip("\n")):
            if current:
                yield "\n".join(current)
            current = []
            continue
        text = _detokenise_wikitext(raw)
        if text:
            current.append(text)
    if current:
        yield "\n".join(current)


_WIKI_MARKUP = [
    (re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S), ""),
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"\{\|.*?\|\}", re.S), ""),  # tables
    (re.compile(r"\[\[(?:File|Image|Category):[^\]]*\]\]", re.I), ""),
    (re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]+)\]\]"), r"\1"),
    (re.compile(r"\[https?://\S+ ([^\]]+)\]"), r"\1"),
    (re.compile(r"'{2,}"), ""),
    (re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M), r"\1"),
    (re.compile(r"<[^>]+>"), ""),
]
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")


def strip_wiki_markup(text: str) -> str:
    text = html.unescape(text)
    for _ in range(5):  # nested templates, innermost first
        text, n = _TEMPLATE.subn("", text)
        if not n:
            break
    for pattern, repl in _WIKI_MARKUP:
        text = pattern.sub(repl, text)
    lines = [line.strip() for line in text.splitlines()]
    return "\n".join(
        line for line in lines if line and (not line.startswith(("*", "|", "!", "{", "}")) or len(line) > 80)
    )


def wikipedia_dump_pages(stream) -> Iterator[str]:
    for _, elem in ET.iterparse(stream, events=("end",)):
        if elem.tag.rsplit("}", 1)[-1] == "text" and elem.text:
            if not elem.text.lstrip().upper().startswith("#REDIRECT"):
                yield strip_wiki_markup(elem.text)
        if elem.tag.rsplit("}", 1)[-1] == "page":
            elem.clear()


def _open_text(path: Path):
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def documents_from_file(path: Path, min_chars: int = 200) -> Iterator[str]:
    name = path.name.lower()
    if ".xml" in name:
        opener = bz2.open if name.endswith(".bz2") else (gzip.open if name.endswith(".gz") else open)
        with opener(path, "rb") as f:
            docs = list(wikipedia_dump_pages(f))
    elif ".jsonl" in name or name.endswith((".json", ".json.gz")):
        with _open_text(path) as f:
            docs = [json.loads(line).get("text", "") for line in f if line.strip()]
    elif "wikitext" in name:
        with _open_text(path) as f:
            docs = list(wikitext_articles(f))
    else:  # plain text: one document per line or per blank-line separated block
        with _open_text(path) as f:
            content = f.read()
        blocks = re.split(r"\n\s*\n", content)
        docs = blocks if len(blocks) > 1 else content.splitlines()
    for doc in docs:
        doc = doc.strip()
        if len(doc) >= min_chars:
            yield doc


def reference_documents(location: str) -> dict[str, list[str]]:
    """Documents per reference file under a folder (or one file)."""
    root = Path(location)
    if not root.exists():
        raise FileNotFoundError(f"quality reference location {location!r} does not exist (set QUALITY_REFERENCE)")
    files = (
        [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    )
    out = {p.name: list(documents_from_file(p)) for p in files}
    if not any(out.values()):
        raise ValueError(f"quality reference location {location!r} holds no documents of at least 200 characters")
    return out
