"""The second quality signal (a bigram LM of the reference text) and the combined score."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
from dataset_assets.quality import classifier
from dataset_assets.quality.reference import reference_documents
from dataset_assets.quality.reference_lm import EMPTY_SCORE, ReferenceLM
from dataset_assets.quality.seeds import SEED_SCHEMA, KeepRule, select_seeds
from dataset_assets.quality.signals import SignalCalibration, combine, fit_combined, from_json
from dataset_assets.quality.heuristics import GopherRules
from tests.conftest import QUALITY


@pytest.fixture(scope="module")
def reference():
    return [d for docs in reference_documents(str(QUALITY)).values() for d in docs]


@pytest.fixture(scope="module")
def lm(reference):
    return ReferenceLM.train(reference[::2])  # the other half stays unseen


def test_the_reference_lm_prefers_unseen_prose_to_the_same_words_shuffled(lm, reference):
    unseen = reference[1::2][:40]
    rng = random.Random(0)
    shuffled = []
    for text in unseen:
        words = text.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    prose, salad = lm.scores(unseen), lm.scores(shuffled)
    assert prose.dtype == np.float32 and (prose > salad).mean() > 0.95  # same words, only the order differs
    assert lm.score("") == EMPTY_SCORE and lm.score("!!! ...") == EMPTY_SCORE
    assert EMPTY_SCORE < lm.score("zzqx vvkw qqpl") < lm.score("the history of the city")  # unknown words still score


def test_the_reference_lm_round_trips_through_its_file(lm, reference, tmp_path):
    lm.save(str(tmp_path / "lm.npz"))
    again = ReferenceLM.load(str(tmp_path / "lm.npz"))
    texts = reference[1::2][:20]
    assert np.array_equal(again.scores(texts), lm.scores(texts)) and again.vocab == lm.vocab


def test_combine_rules():
    a, b = np.array([10.0, 90.0, 50.0]), np.array([30.0, 20.0, 50.0])
    assert np.allclose(combine([a, b], "mean"), [20, 55, 50])
    assert np.allclose(combine([a, b], "max"), [30, 90, 50])
    with pytest.raises(ValueError, match="mean"):
        combine([a, b], "median")


def _crawl_sample(lm, reference):
    """Two crawls of four shards each: crawl B's pages are reference prose, crawl A's are shuffled."""
    rng = random.Random(1)
    texts, crawls, shards = [], [], []
    for i, text in enumerate(reference[1::2][:300]):
        words = text.split()[:200]
        if i % 2:
            rng.shuffle(words)
        texts.append(" ".join(words))
        crawls.append("A" if i % 2 else "B")
        shards.append(f"{crawls[-1]}{i % 4}")
    fasttext_scores = np.array([rng.random() for _ in texts], dtype=np.float32)
    return texts, crawls, shards, fasttext_scores


def test_the_combined_score_is_calibrated_per_crawl_and_keeps_the_top_share_of_each(lm, reference):
    texts, crawls, shards, ft = _crawl_sample(lm, reference)
    fasttext = SignalCalibration.fit(ft, crawls, shards, 100, 2)
    combined, lm_scores = fit_combined(lm, fasttext, ft, texts, crawls, shards, "mean", 100, 2)
    assert sorted(combined.combined.by_crawl) == ["A", "B"] and sorted(combined.lm_calibration.by_crawl) == ["A", "B"]
    got_lm, percentiles = combined.place(fasttext.percentiles(ft, crawls), texts, crawls)
    assert np.array_equal(got_lm, lm_scores)
    names = np.array(crawls)
    for crawl in ("A", "B"):  # the keep rule's top 10% is about 10% of each crawl, whatever the other holds
        share = float(np.mean(percentiles[names == crawl] >= 90))
        assert 0.05 <= share <= 0.15, (crawl, share)
    # Crawl A's shuffled pages are not placed below crawl B's prose: each is judged within its crawl.
    assert abs(np.median(percentiles[names == "A"]) - np.median(percentiles[names == "B"])) < 10
    # The calibration survives its JSON form.
    again = from_json(lm, combined.to_json())
    assert np.allclose(again.place(fasttext.percentiles(ft, crawls), texts, crawls)[1], percentiles)


def test_seeds_carry_each_signal_and_keep_by_the_combined_percentile(lm, reference):
    texts, crawls, shards, ft = _crawl_sample(lm, reference)

    class Fixed:  # a scorer of our own: P(hq) is the sample's fastText stand-in
        def scores(self, batch):
            return np.array([ft[texts.index(t)] for t in batch], dtype=np.float32)

    fasttext = SignalCalibration.fit(ft, crawls, shards, 100, 2)
    combined, lm_scores = fit_combined(lm, fasttext, ft, texts, crawls, shards, "max", 100, 2)
    docs = pa.RecordBatch.from_pylist(
        [{n: None for n in DOCUMENT_SCHEMA.names} | {"id": str(i), "text": t, "crawl": c} for i, (t, c) in enumerate(zip(texts, crawls))],
        schema=DOCUMENT_SCHEMA,
    )
    rule = KeepRule(top_fraction=0.1)
    out = select_seeds(docs, Fixed(), fasttext.quantiles, rule, GopherRules(min_words=1), by_crawl=fasttext.by_crawl, combined=combined)
    assert out.schema == SEED_SCHEMA
    rows = out.to_pylist()
    assert np.allclose([r["quality_score"] for r in rows], ft) and np.allclose([r["lm_score"] for r in rows], lm_scores)
    expected = combined.place(fasttext.percentiles(ft, crawls), texts, crawls)[1]
    assert np.allclose([r["quality_percentile"] for r in rows], expected)
    assert [r["drop_reason"] == "low_quality" for r in rows] == [p < 90 for p in expected]
    alone = select_seeds(docs, Fixed(), fasttext.quantiles, rule, GopherRules(min_words=1), by_crawl=fasttext.by_crawl).to_pylist()
    assert all(r["lm_score"] is None for r in alone)
    assert np.allclose([r["quality_percentile"] for r in alone], fasttext.percentiles(ft, crawls))
