"""`corpus_stats` without Dagster: every stored unigram vector summed per corpus, compared with each
reference, written to the lake with its plots."""

from __future__ import annotations

from dataclasses import dataclass

from dataset_assets.stats import STATS_SCHEMA, Corpus, corpus_rows, rows_table
from dataset_assets.stats.corpora import STATS, StaleVectors, gather_corpora, synthetic_quality
from dataset_assets.stats.divergence import smoothing_note
from dataset_assets.stats.plots import kl_png, zipf_png


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


def corpus_report(lake, tok, smoothing_alpha: float, top_k: int) -> CorpusReport:
    """Raises `StaleVectors` (vectors counted with another tokenizer, listed) or `NoCounts`."""
    corpora = gather_corpora(lake, tok.fingerprint, tok.vocab_size)
    if not corpora:
        raise NoCounts(
            "no unigram counts in the lake: materialise natural_unigrams, seed_unigrams, rephrased_unigrams "
            "or reference_unigrams first"
        )
    refs = [c for c in corpora if c.kind == "reference"]
    rows = corpus_rows(corpora, refs, tok.decode_token, tok.name, smoothing_alpha, top_k)
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
    quality, quality_plot = synthetic_quality(lake)
    return CorpusReport(corpora, refs, rows, note, written, zipf, kl, quality, quality_plot)


__all__ = ["CorpusReport", "NoCounts", "StaleVectors", "corpus_report"]
