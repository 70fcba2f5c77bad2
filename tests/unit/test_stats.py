"""Unigram maths on hand-computable distributions, the counting loop, and count-vector storage."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from dataset_assets.stats import Corpus, corpus_rows, rows_table
from dataset_assets.stats.divergence import (
    coverage,
    entropy_bits,
    js_bits,
    kl_bits,
    smoothed,
    smoothing_note,
    support_shrinkage,
    top_kl_tokens,
    zipf_exponent,
)
from dataset_assets.stats.plots import kl_png, zipf_png, zipf_points
from dataset_assets.stats.unigrams import count_unigrams, counts_from_table, counts_table, rebatch
from tests.conftest import SHARED, english

GPT2 = SHARED / "tokenizers" / "gpt2-tokenizer.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def v(*counts) -> np.ndarray:
    return np.array(counts, dtype=np.int64)


# -- divergence ------------------------------------------------------------------------------------
def test_kl_of_identical_distributions_is_zero():
    counts = v(5, 3, 2, 0)
    assert kl_bits(counts, counts, alpha=0) == 0
    assert kl_bits(counts, counts * 1000, alpha=0) == pytest.approx(0, abs=1e-12)  # scale does not matter


def test_kl_of_two_tokens_matches_the_hand_computed_value():
    # p = (1/2, 1/2), q = (1/4, 3/4): 1/2 log2(2) + 1/2 log2(2/3)
    expected = 0.5 + 0.5 * math.log2(2 / 3)
    assert kl_bits(v(1, 1), v(1, 3), alpha=0) == pytest.approx(expected)
    assert kl_bits(v(1, 3), v(1, 1), alpha=0) != pytest.approx(expected)  # not symmetric


def test_a_token_missing_from_the_corpus_is_infinite_without_smoothing_and_finite_with_it():
    assert kl_bits(v(1, 1), v(2, 0), alpha=0) == math.inf
    # alpha 1: q = (2+1, 0+1) / (2 + 2) = (3/4, 1/4), the mirror of the two-token case above
    assert smoothed(v(2, 0), 1.0) == pytest.approx([0.75, 0.25])
    assert kl_bits(v(1, 1), v(2, 0), alpha=1.0) == pytest.approx(0.5 * math.log2(2 / 3) + 0.5)
    assert "0.01" in smoothing_note(0.01) and "Lidstone" in smoothing_note(0.01)


def test_js_is_symmetric_bounded_by_one_bit_and_exactly_one_for_disjoint_support():
    a, b = v(5, 3, 1, 0), v(0, 2, 2, 7)
    assert js_bits(a, b) == pytest.approx(js_bits(b, a))
    assert 0 < js_bits(a, b) < 1
    assert js_bits(v(1, 0), v(0, 1)) == pytest.approx(1.0)
    assert js_bits(a, a * 3) == pytest.approx(0.0, abs=1e-12)


def test_entropy_of_a_uniform_distribution_over_eight_tokens_is_three_bits():
    assert entropy_bits(np.full(8, 7)) == pytest.approx(3.0)
    assert entropy_bits(v(10, 0, 0)) == 0


@pytest.mark.parametrize("s", [0.8, 1.0, 1.3])
def test_zipf_exponent_of_an_exact_power_law_recovers_s(s):
    ranks = np.arange(1, 5001)
    counts = np.round(1e12 / ranks**s).astype(np.int64)
    rng = np.random.default_rng(0)
    fitted, used = zipf_exponent(rng.permutation(counts))  # order of ids must not matter
    assert fitted == pytest.approx(s, abs=1e-3) and used == 5000


def test_zipf_fit_uses_at_most_the_first_10000_ranks():
    counts = np.round(1e12 / np.arange(1, 20_001) ** 1.1).astype(np.int64)
    assert zipf_exponent(counts)[1] == 10_000
    assert math.isnan(zipf_exponent(v(4, 0, 0))[0])


def test_coverage_is_the_reference_mass_on_tokens_the_corpus_contains():
    assert coverage(v(2, 1, 1), v(5, 0, 3)) == pytest.approx(0.75)
    assert coverage(v(2, 1, 1), v(0, 0, 0)) == 0


def test_top_kl_tokens_put_a_frequent_reference_token_missing_from_the_corpus_first():
    reference, corpus = v(50, 30, 20, 0), v(60, 0, 20, 40)
    top = top_kl_tokens(reference, corpus, alpha=0.01, k=3)
    assert top[0]["token_id"] == 1 and top[0]["p_ref"] == pytest.approx(0.3) and top[0]["p_corpus"] == 0
    assert all(t["contribution"] > 0 for t in top) and 3 not in [t["token_id"] for t in top]  # no reference mass
    assert sum(t["contribution"] for t in top_kl_tokens(reference, corpus, 0.01, 10)) >= kl_bits(
        reference, corpus, 0.01
    )


def test_support_shrinkage_counts_the_source_types_the_rephrased_text_lost():
    lost, ratio = support_shrinkage(v(1, 1, 1, 1, 0), v(3, 0, 2, 0, 5))
    assert lost == pytest.approx(0.5) and ratio == pytest.approx(0.75)


# -- counting and storage --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.from_file(str(GPT2))


def encode(tok):
    return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def test_rebatch_regroups_texts_into_fixed_sizes():
    assert list(rebatch([["a", "b", "c"], [], ["d"], ["e", "f", "g"]], 3)) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_counts_equal_a_direct_count_whatever_the_batch_size(gpt2, batch_size):
    texts = [english(i) for i in range(40)] + ["", "日本語 ünïcödé"]
    direct = np.zeros(gpt2.get_vocab_size(), dtype=np.int64)
    for text in texts:
        for i in gpt2.encode(text, add_special_tokens=False).ids:
            direct[i] += 1
    counted = count_unigrams([texts[:13], texts[13:]], encode(gpt2), gpt2.get_vocab_size(), batch_size)
    assert np.array_equal(counted.counts, direct)
    assert (
        counted.documents == len(texts) and counted.tokens == direct.sum() and counted.types == np.count_nonzero(direct)
    )


def test_an_id_beyond_the_vocabulary_is_refused():
    with pytest.raises(ValueError, match="outside the vocabulary of 10"):
        count_unigrams([["x"]], lambda texts: [[3, 10]], 10)


def test_count_vector_round_trips_through_parquet_with_its_vocabulary(tmp_path):
    counts = np.zeros(50_257, dtype=np.int64)
    counts[[0, 17, 50_000]] = [3, 1, 2**40]
    path = tmp_path / "part-00000.parquet"
    pq.write_table(counts_table(counts, "gpt2", "abc123", documents=9), path)
    table = pq.read_table(path)
    assert table.num_rows == 3 and table.schema.field("token_id").type == "int32"
    stored = counts_from_table(table)
    assert np.array_equal(stored.counts.counts, counts)
    assert (stored.tokenizer, stored.fingerprint, stored.vocab_size, stored.counts.documents) == (
        "gpt2",
        "abc123",
        50_257,
        9,
    )


def test_an_empty_count_vector_keeps_its_vocabulary_size(tmp_path):
    pq.write_table(counts_table(np.zeros(100, dtype=np.int64), "t"), tmp_path / "p.parquet")
    stored = counts_from_table(pq.read_table(tmp_path / "p.parquet"))
    assert stored.vocab_size == 100 and stored.counts.tokens == 0


# -- the table and the plots -----------------------------------------------------------------------
def test_rows_pair_every_corpus_with_every_reference_and_derived_corpora_with_their_source():
    seeds = Corpus("seeds", "seeds", v(4, 4, 2, 0))
    strategy = Corpus("faq", "strategy", v(8, 0, 2, 0), source=seeds)
    refs = [Corpus("wiki", "reference", v(5, 5, 0, 0)), Corpus("news", "reference", v(1, 1, 1, 1))]
    rows = corpus_rows([seeds, strategy, *refs], refs, lambda i: f"<{i}>", "toy", alpha=0.5, top_k=2)
    assert [(r["corpus"], r["reference"]) for r in rows] == [
        (c, r) for c in ("seeds", "faq", "wiki", "news") for r in ("wiki", "news")
    ]
    faq_wiki = rows[2]
    assert faq_wiki["support_lost"] == pytest.approx(1 / 3) and faq_wiki["source"] == "seeds"
    assert faq_wiki["coverage"] == pytest.approx(0.5) and faq_wiki["smoothing_alpha"] == 0.5
    assert json.loads(faq_wiki["top_kl_tokens"])[0]["token"] == "<1>"
    wiki_self = rows[4]
    # against itself only the smoothing remains: q = (5.5, 5.5, .5, .5) / 12, so KL = log2(12 / 11)
    assert wiki_self["kl_bits"] == pytest.approx(math.log2(12 / 11)) and wiki_self["js_bits"] == 0
    assert wiki_self["source"] is None
    assert rows_table(rows).num_rows == 8


def test_without_references_each_corpus_still_gets_one_row():
    rows = corpus_rows([Corpus("natural", "natural", v(3, 1))], [], str, "toy")
    assert len(rows) == 1 and rows[0]["reference"] is None and rows[0]["tokens"] == 4 and rows[0]["kl_bits"] is None
    assert rows_table(rows).column("kl_bits").null_count == 1


def test_zipf_points_are_log_spaced_ranks_of_relative_frequencies():
    ranks, freq = zipf_points(np.arange(1, 100_001), points=50)
    assert ranks[0] == 1 and ranks[-1] == 100_000 and len(ranks) <= 50
    assert np.all(np.diff(freq) <= 0) and freq[0] == pytest.approx(100_000 / np.arange(1, 100_001).sum())


def test_plots_are_png_images():
    zipf = zipf_png({"natural": v(9, 4, 1), "wiki": v(5, 5, 1)}, {"wiki": "reference"})
    kl = kl_png([("natural", "wiki", 0.4), ("faq", "wiki", 1.2), ("wiki", "wiki", 0.0)])
    assert zipf.startswith(PNG_MAGIC) and kl.startswith(PNG_MAGIC)


def test_counting_into_the_lake_writes_a_self_describing_vector_and_reports_progress(tmp_path):
    from types import SimpleNamespace

    from dataset_assets.stats.counting import count_into_lake, reference_text_batches
    from resources.lake import Lake

    # A character-level stand-in for a loaded tokenizer: ids are byte values.
    tok = SimpleNamespace(
        name="bytes", vocab_size=256, fingerprint="fp1", encode_batch=lambda texts: [list(t.encode()) for t in texts]
    )
    source = tmp_path / "ref.txt"
    source.write_text("abc abc abc abc\n\n" * 3 + "zz zz zz zz zz\n")
    lake, seen = Lake(root=str(tmp_path / "lake")), []
    result = count_into_lake(
        lake,
        tok,
        2,
        "reference_unigrams",
        {"reference": "ref"},
        lambda read: reference_text_batches(source, 2, read),
        lambda n, line: seen.append((n, line)),
    )
    summary = result.summary()
    assert summary["documents"] == 4 and summary["tokens"] == 3 * 15 + 14
    assert summary["distinct_tokens"] == 5  # a, b, c, space, z
    assert seen[-1][0] == 4 and "4 documents" in seen[-1][1]
    stored = counts_from_table(lake.read_partition("reference_unigrams", {"reference": "ref"}))
    assert stored.counts.counts[ord("z")] == 10 and (stored.tokenizer, stored.fingerprint, stored.counts.documents) == (
        "bytes",
        "fp1",
        4,
    )
    other = count_into_lake(
        lake,
        SimpleNamespace(**{**vars(tok), "fingerprint": "fp2"}),
        2,
        "reference_unigrams",
        {"reference": "ref"},
        lambda read: reference_text_batches(source, 2, read),
        lambda n, line: None,
    )
    assert other.data_version() != result.data_version()  # the same counts under another tokenizer are other data


# --- statistics at equal sizes ------------------------------------------------------------------------------


def _counts(texts: list[str], tok) -> tuple[np.ndarray, list]:
    """A corpus's vector and each document's own counts, as the counting assets store them."""
    documents: list = []
    counted = count_unigrams([texts], encode(tok), tok.get_vocab_size(), 256, documents=documents)
    return counted.counts, documents


@pytest.fixture(scope="module")
def c4_and_reference(gpt2):
    import gzip

    with gzip.open(SHARED / "crawl" / "c4-en-sample-1000.jsonl.gz", "rt") as f:
        docs = [json.loads(line)["text"] for line in f]
    from dataset_assets.stats.references import reference_corpus_documents

    reference = list(reference_corpus_documents(SHARED / "reference" / "wikitext-2-test.txt"))[
        :60
    ]  # as corpus_stats reads it
    return docs, _counts(reference, gpt2)[0]


def test_two_random_halves_of_one_corpus_have_intervals_that_cover_each_other(gpt2, c4_and_reference):
    """Random halvings of the C4 sample: the halves' KL intervals overlap, and each covers the other's
    value in most splits. A calibrated 95% interval covers an independent same-size sample's value
    about 84% of the time; measured over 20 splits the document bootstrap's KL intervals overlapped
    20/20 and covered 14/20, JS 19/20 and 12/20 (somewhat narrow: the README says so)."""
    from dataset_assets.stats.matched import budget_for, matched

    docs, reference = c4_and_reference
    overlap = {"kl": 0, "js": 0}
    covered = 0
    for split in range(8):
        order = np.random.default_rng(split).permutation(len(docs))
        halves = [_counts([docs[i] for i in order[:500]], gpt2), _counts([docs[i] for i in order[500:]], gpt2)]
        budget = budget_for([int(h.sum()) for h, _ in halves])
        a, b = (
            matched(h, {"ref": reference}, budget, samples=100, seed=i, documents=d) for i, (h, d) in enumerate(halves)
        )
        assert a.unit == b.unit == "documents"
        for metric in overlap:
            (pa_, la, ha), (pb, lb, hb) = a.by_reference["ref"][metric], b.by_reference["ref"][metric]
            overlap[metric] += la <= hb and lb <= ha
            covered += metric == "kl" and la <= pb <= ha and lb <= pa_ <= hb
    assert overlap["kl"] >= 7 and overlap["js"] >= 7 and covered >= 4, (overlap, covered)


def test_a_ten_percent_sample_differs_at_full_size_and_agrees_at_the_matched_budget(gpt2, c4_and_reference):
    from dataset_assets.stats.divergence import kl_bits
    from dataset_assets.stats.matched import budget_for, matched

    docs, reference = c4_and_reference
    whole, whole_docs = _counts(docs, gpt2)
    sample, sample_docs = _counts(docs[::10], gpt2)
    full_whole, full_sample = kl_bits(reference, whole), kl_bits(reference, sample)
    assert full_sample > full_whole * 1.1  # smaller looks farther, just by being smaller
    budget = budget_for([int(whole.sum()), int(sample.sum())])
    assert budget == int(sample.sum())
    m_whole = matched(whole, {"ref": reference}, budget, samples=60, documents=whole_docs).by_reference["ref"]["kl"]
    m_sample = matched(sample, {"ref": reference}, budget, samples=60, seed=1, documents=sample_docs).by_reference[
        "ref"
    ]["kl"]
    assert m_whole[1] <= m_sample[2] and m_sample[1] <= m_whole[2], (m_whole, m_sample)  # the intervals overlap
    assert not (m_whole[1] <= full_whole <= m_whole[2])  # the full-size figure measured size, not text


def test_without_document_counts_tokens_are_resampled_and_the_row_says_so(gpt2, c4_and_reference):
    from dataset_assets.stats.matched import matched

    docs, reference = c4_and_reference
    counts, documents = _counts(docs[:100], gpt2)
    assert matched(counts, {"ref": reference}, 5000, samples=10).unit == "tokens"
    assert matched(counts, {"ref": reference}, 5000, samples=10, documents=documents[:5]).unit == "tokens"  # too few
    drawn = matched(counts, {"ref": reference}, 5000, samples=10, documents=documents)
    assert drawn.unit == "documents" and drawn.figures["distinct_tokens"][0] <= np.count_nonzero(counts)


def test_a_corpus_smaller_than_a_configured_budget_is_reported_and_left_out():
    from dataset_assets.stats import Corpus, corpus_rows
    from dataset_assets.stats.matched import matched

    small = matched(v(3, 1, 0, 0), {"ref": v(1, 1, 1, 1)}, budget=10)
    assert small.note == "4 tokens: smaller than the matched budget of 10, left out" and not small.by_reference
    rows = corpus_rows(
        [Corpus("tiny", "natural", v(3, 1, 0, 0))],
        [Corpus("ref", "reference", v(1, 1, 1, 1))],
        str,
        "t",
        matched_by_corpus={"tiny": small},
    )
    row = next(r for r in rows if r["reference"] == "ref")
    assert row["matched_tokens"] == 10 and row["kl_bits_matched"] is None and "left out" in row["matched_note"]
    fine = matched(v(30, 10, 5, 5), {"ref": v(1, 1, 1, 1)}, budget=20, samples=40)
    assert (
        fine.figures["distinct_tokens"][0] <= 4
        and fine.by_reference["ref"]["kl"][1] <= fine.by_reference["ref"]["kl"][2]
    )


def test_diversity_measures_by_hand():
    from dataset_assets.stats.diversity import Sampled, measures, self_similarity

    varied = [english(i, f"topic{i}") + " " + " ".join(f"word{i}x{j}" for j in range(40)) for i in range(6)]
    twins = [varied[0]] * 3 + varied[3:6]
    assert self_similarity(varied)[1] == 0.0  # nobody has a near twin
    mean, share = self_similarity(twins)
    assert share == pytest.approx(0.5) and mean > 0.5  # three copies of one document: half the corpus
    m = measures(
        Sampled("c", "strategy", ["a b c d", "a b e"], 7, [0.5, 0.7], numbers=4, unsupported=1), {"r": {"a", "z"}}
    )
    assert m["distinct_1"] == round(5 / 7, 4) and m["distinct_2"] == round(
        4 / 5, 4
    )  # rounded as partition measures are
    assert m["reference_vocabulary_covered"] == {"r": 0.5} and m["source_word_share"] == pytest.approx(0.6)
    assert m["unsupported_number_rate"] == 0.25 and m["documents"] == 2
