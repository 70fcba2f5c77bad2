"""`corpus_stats` without Dagster: every stored unigram vector summed per corpus, compared with each
reference, written to the lake with its plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from dataset_assets.stats import STATS_SCHEMA, Corpus, corpus_rows, rows_table
from dataset_assets.stats.corpora import STATS, StaleVectors, document_counts, gather_corpora, synthetic_quality
from dataset_assets.stats.divergence import ZIPF_MAX_RANK, smoothing_note
from dataset_assets.stats.matched import SAMPLES, budget_for, matched
from dataset_assets.stats.plots import interval_png, kl_png, zipf_png

# How the table's figures were made, in words, for the asset's page.
NOTES = {
    "zipf_fit": f"least squares of log frequency on log rank, ranks 1..min({ZIPF_MAX_RANK}, distinct tokens)",
    "support_shrinkage": "strategy vs kept seeds of the same shards: support_lost = share of the seeds' "
    "distinct tokens absent from the strategy; types_ratio = strategy types / seed types",
    "matched": "every compared corpus also at the smallest one's size (or the configured budget): bootstrap "
    "medians and 95% intervals over whole documents (tokens for a corpus of under 20 documents: matched_unit)",
}


class NoCounts(Exception):
    """The lake holds no unigram counts yet."""


@dataclass
class CorpusReport:
    corpora: list[Corpus]
    references: list[Corpus]
    rows: list[dict]
    smoothing: str
    written: object  # resources.lake.Written of the stats table
    zipf: bytes
    kl: bytes
    quality: dict
    quality_plot: bytes
    matched_tokens: int = 0
    kl_matched: bytes = b""
    diversity: list = field(default_factory=list)
    diversity_plot: bytes = b""


def matched_figures(
    lake, corpora: list[Corpus], refs: list[Corpus], configured: Optional[int], samples: int, seed: int, alpha: float
) -> tuple[int, dict]:
    """(the matched budget, corpus name -> its figures at that budget) for every compared corpus; one
    corpus's documents in memory at a time."""
    compared = [c for c in corpora if c.kind != "reference"]
    budget = budget_for([int(c.counts.sum()) for c in compared], configured)
    references = {r.name: r.counts for r in refs}
    return budget, {
        c.name: matched(c.counts, references, budget, samples, seed, alpha, document_counts(lake, c)) for c in compared
    }


def corpus_report(
    lake,
    tok,
    smoothing_alpha: float,
    top_k: int,
    matched_tokens: Optional[int] = None,
    samples: int = SAMPLES,
    seed: int = 0,
) -> CorpusReport:
    """Raises `StaleVectors` (vectors counted with another tokenizer, listed) or `NoCounts`."""
    corpora = gather_corpora(lake, tok.fingerprint, tok.vocab_size)
    if not corpora:
        raise NoCounts(
            "no unigram counts in the lake: materialise natural_unigrams, seed_unigrams, rephrased_unigrams "
            "or reference_unigrams first"
        )
    refs = [c for c in corpora if c.kind == "reference"]
    budget, figures = matched_figures(lake, corpora, refs, matched_tokens, samples, seed, smoothing_alpha)
    rows = corpus_rows(corpora, refs, tok.decode_token, tok.name, smoothing_alpha, top_k, figures)
    note = smoothing_note(smoothing_alpha)
    meta = {"smoothing": note, "tokenizer": tok.name}
    written = lake.write_partition(STATS, {}, rows_table(rows).to_batches(), STATS_SCHEMA, meta)
    zipf = zipf_png(
        {c.name: c.counts for c in corpora}, {c.name: c.kind for c in corpora}, f"Zipf curves ({tok.name} tokens)"
    )
    bars = [(r["corpus"], r["reference"], r["kl_bits"]) for r in rows if r["reference"]]
    kl = kl_png(bars, f"KL(reference || corpus), {tok.name} tokens")
    lake.put_bytes([STATS, "zipf.png"], zipf)
    lake.put_bytes([STATS, "kl.png"], kl)
    matched_points = [
        (r["corpus"], r["reference"], r["kl_bits_matched"], r["kl_bits_low"], r["kl_bits_high"])
        for r in rows
        if r["reference"] and r["kl_bits_matched"] is not None
    ]
    kl_matched = interval_png(
        matched_points,
        f"KL(reference || corpus) at {budget:,} {tok.name} tokens each, 95% bootstrap intervals",
        "KL, bits (every corpus at the same size)",
    )
    lake.put_bytes([STATS, "kl_matched.png"], kl_matched)
    quality, quality_plot = synthetic_quality(lake)
    diversity, diversity_plot = _diversity(lake, corpora, refs, budget)
    return CorpusReport(
        corpora,
        refs,
        rows,
        note,
        written,
        zipf,
        kl,
        quality,
        quality_plot,
        budget,
        kl_matched,
        diversity,
        diversity_plot,
    )


def _diversity(lake, corpora: list[Corpus], refs: list[Corpus], budget: int) -> tuple[list[dict], bytes]:
    """Natural, seeds and each strategy at one matched size: `corpus_stats/diversity.json` and its plot."""
    from dataset_assets import settings
    from dataset_assets.stats.diversity import diversity_png, diversity_table
    from dataset_assets.stats.references import reference_corpus_documents, reference_sources

    sources = reference_sources(settings.references_dir())
    texts = {r.name: list(reference_corpus_documents(sources[r.name])) for r in refs if r.name in sources}
    rows = diversity_table(lake, corpora, budget, texts)
    if not rows:
        return [], b""
    plot = diversity_png(rows)
    lake.put_json([STATS, "diversity.json"], rows)
    lake.put_bytes([STATS, "diversity.png"], plot)
    return rows, plot


__all__ = ["CorpusReport", "NoCounts", "StaleVectors", "corpus_report"]
