"""Checks on a whole rephrased partition: template-aware near-duplicate outputs, the partition's
measures (kept share, diversity, output formats) and their WARN/ERROR verdicts.

Template-aware: the labels a strategy asks for (`Question:`, `Student:`) and the phrases of its own
prompt (instructions, worked examples) that most of a partition's outputs repeat are left out before
two outputs are compared, so a shared format never makes two rephrasings of different documents look
alike. What the outputs share is never enough on its own to call a phrase template: a generator that
collapses into one paragraph for every document would otherwise hide itself (the more it collapses,
the more of its paragraph would count as template).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from dataset_assets.rephrase.checks import CheckConfig, ngrams, strip_labels, words


def _shingles(text: str, n: int = 5) -> set[int]:
    tokens = words(strip_labels(text))
    if len(tokens) < n:
        return {hash(tuple(tokens))} if tokens else set()
    return {hash(g) for g in ngrams(tokens, n)}


def prompt_grams(message_texts: Iterable[str]) -> set[int]:
    """The 5-grams a strategy's own prompt holds (instructions and worked examples, placeholders out):
    the only phrases its outputs may share as template."""
    out: set[int] = set()
    for text in message_texts:
        out |= _shingles(re.sub(r"\{(document|previous|audience)\}", " ", text))
    return out


def template_duplicates(
    rows: Sequence[tuple[str, str, str]], config: CheckConfig, template_source: frozenset = frozenset()
) -> dict[str, str]:
    """{row id: id of the row it duplicates} over (id, source_id, text) rows that passed every row check.

    Outputs of the same source are never compared (pieces of one document); 5-grams of the strategy's
    prompt (`template_source`, from `prompt_grams`) that at least `template_phrase_share` of the rows
    repeat are its template and left out (with 8+ rows); an inverted index over the remaining 5-grams
    gives exact Jaccard for every pair that shares one. Clusters are joined by union-find and keep
    their smallest id.
    """
    if not config.template_duplicate or len(rows) < 2:
        return {}
    ids = [r[0] for r in rows]
    sources = [r[1] for r in rows]
    exact: dict[str, int] = {}
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b, key=lambda k: ids[k])] = min(a, b, key=lambda k: ids[k])

    # Identical outputs of different sources: duplicates however common their phrases are.
    for i, (_, _, text) in enumerate(rows):
        key = " ".join(words(strip_labels(text)))
        if not key:
            continue
        j = exact.setdefault(key, i)
        if j != i and sources[j] != sources[i]:
            union(i, j)
    sets = [_shingles(text) for _, _, text in rows]
    df = Counter(s for shingle_set in sets for s in shingle_set)
    if len(rows) >= 8:
        cap = config.template_phrase_share * len(rows)
        template = {s for s, c in df.items() if c >= cap and s in template_source}
        sets = [s - template for s in sets]
    index: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            index[sh].append(i)
    for i, s in enumerate(sets):
        if not s:
            continue
        shared: Counter = Counter()
        for sh in s:
            for j in index[sh]:
                if j > i and sources[j] != sources[i]:
                    shared[j] += 1
        for j, inter in shared.items():
            if inter / (len(s) + len(sets[j]) - inter) >= config.duplicate_jaccard:
                union(i, j)
    return {ids[i]: ids[find(i)] for i in range(len(rows)) if find(i) != i}


# --- partition measures -------------------------------------------------------------------------

_FORMATS = {
    "qa_pairs": re.compile(
        r"(?im)^[^\w\n]*(?:question|q)\s*\d*\s*\**:.*\n(?:.*\n){0,6}?[^\w\n]*(?:answer|a)\s*\d*\s*\**:"
    ),
    "dialogue": re.compile(r"(?m)(?:^[^\w\n]*[A-Z][a-z]+\s*:.*\n?){2,}"),
    "list": re.compile(r"(?m)(?:^\s*(?:[-*\u2022]|\d+[.)])\s+\S.*\n?){2,}"),
    "table": re.compile(r"(?m)^\s*\|.*\|\s*$\n^\s*\|?\s*:?-{3,}"),
    "headings": re.compile(r"(?m)^\s*(?:#{1,6}\s+\S|[A-Z][^\n.!?]{2,60}\n={3,}|\*\*[^*\n]{2,60}\*\*\s*$)"),
}


def output_formats(text: str) -> list[str]:
    """The formats a text uses (BeyondWeb: style and format shares matter)."""
    found = [name for name, pattern in _FORMATS.items() if pattern.search(text)]
    if "qa_pairs" in found and "dialogue" in found:
        found.remove("dialogue")  # Question:/Answer: lines are pairs, not a conversation
    return found or ["prose"]


def distinct_n(texts: Iterable[str], n_max: int = 4) -> dict[str, float]:
    """distinct-n (unique n-grams / all n-grams over the texts), n = 1..n_max."""
    seen = [set() for _ in range(n_max)]
    totals = [0] * n_max
    for text in texts:
        tokens = words(text)
        for n in range(1, n_max + 1):
            grams = ngrams(tokens, n)
            totals[n - 1] += len(grams)
            seen[n - 1].update(grams)
    return {
        f"distinct_{n}": round(len(seen[n - 1]) / totals[n - 1], 4) if totals[n - 1] else 0.0
        for n in range(1, n_max + 1)
    }


def partition_measures(rows: Sequence[dict]) -> dict:
    """Measures of one partition from its rows (text, kept, drop_reason, flags and the row scores)."""
    total = len(rows)
    kept = [r for r in rows if r["kept"]]
    drops = Counter(r["drop_reason"] for r in rows if not r["kept"])
    flagged = Counter(f.split(":")[0] for r in rows for f in (r.get("flags") or []))
    formats = Counter(f for r in kept for f in output_formats(r["text"] or ""))
    numbers_seen = sum(r.get("numbers") or 0 for r in rows)
    unsupported = sum(r.get("unsupported_numbers") or 0 for r in rows)

    def mean(key: str, source=kept) -> float:
        values = [r[key] for r in source if r.get(key) is not None]
        return round(sum(values) / len(values), 4) if values else 0.0

    return {
        "rows": total,
        "kept": len(kept),
        "kept_share": round(len(kept) / total, 4) if total else 0.0,
        "drops": dict(sorted(drops.items())),
        "flags": dict(sorted(flagged.items())),
        **distinct_n(r["text"] for r in kept),
        "mean_compression_ratio": mean("compression_ratio"),
        "template_duplicate_share": round(flagged["template_duplicate"] / total, 4) if total else 0.0,
        "repetition_share": round(flagged["repetition"] / total, 4) if total else 0.0,
        "mean_source_word_share": mean("source_word_share"),
        "unsupported_number_rate": round(unsupported / numbers_seen, 4) if numbers_seen else 0.0,
        "formats": {k: round(v / len(kept), 4) for k, v in sorted(formats.items())} if kept else {},
    }


def judge(measures: dict, config: CheckConfig) -> dict[str, dict]:
    """The partition's asset checks: {check: {"severity": "ok"|"warn"|"error", "value", "warn", "error"}}."""
    out = {}
    small = measures["rows"] < config.min_rows
    for name, key, higher_is_bad in (
        ("kept_share", "kept_share", False),
        ("template_duplicate_share", "template_duplicate_share", True),
        ("repetition_share", "repetition_share", True),
    ):
        warn, error = getattr(config, f"warn_{name}"), getattr(config, f"error_{name}")
        value = measures[key]
        if small:
            severity = "ok"
        elif (value >= error) if higher_is_bad else (value < error):
            severity = "error"
        elif (value >= warn) if higher_is_bad else (value < warn):
            severity = "warn"
        else:
            severity = "ok"
        out[name] = {"severity": severity, "value": value, "warn": warn, "error": error, "rows": measures["rows"]}
    return out
