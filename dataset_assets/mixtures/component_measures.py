"""Diversity and faithfulness of each component of a mixture version, for its manifest and dataset card:
the measures `corpus_stats` gives per corpus (stats/diversity.py), over the rows the version holds,
every component cut to the same number of words so that no figure differs by size alone.

While the version's shards are written, each component's first uses (repeat 0) are sampled by their
mixture row id (itself a hash), enough for CAP_WORDS words; then every component is cut to the smallest sample's
words (at most CAP_WORDS). For rephrased components the source-word share and the unsupported numbers
come from their rephrased rows (looked up by `rephrased_id` in the partitions the version drew from).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_assets.mixtures.recipe import NATURAL
from dataset_assets.stats.diversity import OVERSAMPLE, cut, measures

# Words measured per component (a hash-chosen sample of a larger one), and documents compared pairwise for
# self-similarity: small enough that a version's build stays within 1.5x a bare DuckDB copy of its rows
# (benchmarks/mixture_build.py); corpus_stats measures the whole corpora.
CAP_WORDS = 5_000
MAX_DOCS = 500
TOKENS_PER_WORD = 1.3  # about, for English under GPT-2-like tokenizers: only sizes the sample
SCORES = ["source_word_share", "numbers", "unsupported_numbers"]


class ComponentSampler:
    """Passes the version's tables through, keeping a fixed share of each component's first uses. A
    mixture row's id is the hex of a hash (16 digits), so `id <= cut` picks a share with no hashing."""

    def __init__(self, component_tokens: dict[str, int], cap_words: int = CAP_WORDS):
        self.cap_words = cap_words
        wanted = OVERSAMPLE * cap_words * TOKENS_PER_WORD
        self._cut = {c: f"{min(2**64 - 1, int(wanted / max(t, 1) * 2**64)):016x}" for c, t in component_tokens.items()}
        self.rows: dict[str, list[dict]] = {c: [] for c in component_tokens}

    def observe(self, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
        for table in tables:
            first = table.filter(pc.equal(table.column("repeat"), 0))
            for label, cut_at in self._cut.items():
                mine = pc.and_(pc.equal(first.column("component"), label), pc.less_equal(first.column("id"), cut_at))
                picked = first.filter(mine).select(["id", "component", "text", "rephrased_id"])
                self.rows[label] += [row for row in picked.to_pylist() if row["text"]]
            yield table


def _scores(lake, files: list[str], ids: set[str]) -> dict[str, dict]:
    """SCORES of the rephrased rows with these ids ({} where the files predate the columns)."""
    out = {}
    for path in files:
        try:
            table = pq.read_table(path, filesystem=lake.fs, columns=["id", *SCORES])
        except (KeyError, ValueError, pa.ArrowInvalid):
            return {}
        table = table.filter(pc.is_in(table.column("id"), pa.array(sorted(ids), pa.string())))
        out.update({r["id"]: r for r in table.to_pylist()})
    return out


def component_measures(lake, sampler: ComponentSampler, files_by_component: dict[str, list[str]]) -> dict:
    """{"matched_words", "components": {label: measures}}; a component with no text is reported empty."""
    sizes = {c: sum(len(r["text"].split()) for r in rows) for c, rows in sampler.rows.items()}
    measured = {c: n for c, n in sizes.items() if n > 0}
    if not measured:
        return {"matched_words": 0, "components": {}}
    budget = min(sampler.cap_words, *measured.values())
    out = {}
    for label, rows in sampler.rows.items():
        if label not in measured:
            out[label] = {"documents": 0, "matched_words": 0, "empty": True}
            continue
        if label != NATURAL:
            scores = _scores(lake, files_by_component.get(label, []), {r["rephrased_id"] for r in rows})
            rows = [{**r, **{k: scores.get(r["rephrased_id"], {}).get(k) for k in SCORES}} for r in rows]
        sampled = cut(label, "natural" if label == NATURAL else "strategy", rows, budget)
        values = measures(sampled, {}, MAX_DOCS)
        values.pop("reference_vocabulary_covered")
        out[label] = {k: v for k, v in values.items() if k not in ("corpus", "kind")}
    return {"matched_words": budget, "components": out}


def measures_markdown(measured: dict) -> list[str]:
    """The card's table: one line per component."""
    if not measured.get("components"):
        return []
    lines = [
        f"Diversity and faithfulness per component, each cut to the same {measured['matched_words']:,} words of the "
        "rows this version holds:",
        "",
        "| component | distinct-2 | distinct-4 | compression | self-similarity (mean, >0.5) | source words kept | "
        "unsupported numbers |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m in measured["components"].items():
        if m.get("empty"):
            lines.append(f"| {label} | - | - | - | - | - | - |")
            continue
        kept = "-" if m["source_word_share"] is None else f"{m['source_word_share']:.2f}"
        numbers = "-" if m["unsupported_number_rate"] is None else f"{m['unsupported_number_rate']:.1%}"
        lines.append(
            f"| {label} | {m['distinct_2']:.3f} | {m['distinct_4']:.3f} | {m['compression_ratio']:.3f} | "
            f"{m['self_similarity_mean']:.3f}, {m['self_similarity_above_half']:.1%} | {kept} | {numbers} |"
        )
    return [*lines, ""]
