"""The second quality signal (a bigram LM of the reference text) and the combined score."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
from dataset_assets.quality.heuristics import GopherRules
from dataset_assets.quality.reference import reference_documents
from dataset_assets.quality.reference_lm import EMPTY_SCORE, LEGACY_SCORE_CHARS, SCORE_CHARS, ReferenceLM
from dataset_assets.quality.seeds import SEED_SCHEMA, KeepRule, select_seeds
from dataset_assets.quality.signals import (
    LENGTH,
    LENGTH_CAP,
    REFERENCE_LM,
    SignalCalibration,
    combine,
    fit_combined,
    from_json,
    length_scores,
)
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
    assert again.score_chars == lm.score_chars == SCORE_CHARS


def test_the_reference_lm_reads_the_prefix_it_was_calibrated_with(lm, reference, tmp_path):
    """A document's score depends only on its first score_chars characters, and a model file written
    before the prefix was stored keeps scoring as it was calibrated (2,000 characters)."""
    text = " ".join(reference[1::2])[: 3 * LEGACY_SCORE_CHARS]
    tail = " zzqx vvkw qqpl" * 50
    assert lm.score(text[:SCORE_CHARS] + tail) == lm.score(text[:SCORE_CHARS])
    assert lm.score(text[: SCORE_CHARS - 20] + tail) < lm.score(text[: SCORE_CHARS - 20])
    lm.save(str(tmp_path / "lm.npz"))
    with np.load(str(tmp_path / "lm.npz")) as z:
        old = {k: z[k] for k in z.files if k != "score_chars"}
    np.savez_compressed(str(tmp_path / "old.npz"), **old)
    legacy = ReferenceLM.load(str(tmp_path / "old.npz"))
    assert legacy.score_chars == LEGACY_SCORE_CHARS > SCORE_CHARS
    assert legacy.score(text) == legacy.score(text[:LEGACY_SCORE_CHARS]) != lm.score(text)


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
    combined = fit_combined([REFERENCE_LM, LENGTH], lm, fasttext, ft, texts, crawls, shards, "mean", 100, 2)
    assert sorted(combined.combined.by_crawl) == ["A", "B"]
    assert all(sorted(combined.calibration[n].by_crawl) == ["A", "B"] for n in (REFERENCE_LM, LENGTH))
    got, percentiles = combined.place(fasttext.percentiles(ft, crawls), texts, crawls)
    assert np.array_equal(got[REFERENCE_LM], lm.scores(texts)) and np.array_equal(got[LENGTH], length_scores(texts))
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
    combined = fit_combined([REFERENCE_LM, LENGTH], lm, fasttext, ft, texts, crawls, shards, "max", 100, 2)
    docs = pa.RecordBatch.from_pylist(
        [
            {n: None for n in DOCUMENT_SCHEMA.names} | {"id": str(i), "text": t, "crawl": c}
            for i, (t, c) in enumerate(zip(texts, crawls))
        ],
        schema=DOCUMENT_SCHEMA,
    )
    rule = KeepRule(top_fraction=0.1)
    out = select_seeds(
        docs, Fixed(), fasttext.quantiles, rule, GopherRules(min_words=1), by_crawl=fasttext.by_crawl, combined=combined
    )
    assert out.schema == SEED_SCHEMA
    rows = out.to_pylist()
    assert np.allclose([r["quality_score"] for r in rows], ft) and np.allclose(
        [r["lm_score"] for r in rows], lm.scores(texts)
    )
    assert np.array_equal([r["length_score"] for r in rows], length_scores(texts))
    expected = combined.place(fasttext.percentiles(ft, crawls), texts, crawls)[1]
    assert np.allclose([r["quality_percentile"] for r in rows], expected)
    assert [r["drop_reason"] == "low_quality" for r in rows] == [p < 90 for p in expected]
    alone = select_seeds(
        docs, Fixed(), fasttext.quantiles, rule, GopherRules(min_words=1), by_crawl=fasttext.by_crawl
    ).to_pylist()
    assert all(r["lm_score"] is None and r["length_score"] is None for r in alone)
    assert np.allclose([r["quality_percentile"] for r in alone], fasttext.percentiles(ft, crawls))


def test_the_length_signal_counts_words_up_to_its_cap_and_combines_without_the_lm(reference):
    assert length_scores(["", "Two words.", "It's 3 o'clock\n\n - then"]).tolist() == [0, 2, 5]  # whitespace-separated
    assert length_scores(["word " * (3 * LENGTH_CAP)])[0] == LENGTH_CAP
    # A combination of the classifier and length alone needs no LM, and survives its JSON.
    texts = [" ".join((t.split() * 100)[: 20 + 7 * i]) for i, t in enumerate(reference[:200])]  # longer and longer
    crawls, shards = ["A"] * len(texts), [f"s{i % 3}" for i in range(len(texts))]
    ft = np.linspace(0, 1, len(texts)).astype(np.float32)[::-1].copy()  # the classifier prefers the short pages
    fasttext = SignalCalibration.fit(ft, crawls, shards, 100, 2)
    combined = fit_combined([LENGTH], None, fasttext, ft, texts, crawls, shards, "mean", 100, 2)
    assert combined.to_json()["order"] == [LENGTH] and REFERENCE_LM not in combined.to_json()
    scores, percentiles = combined.place(fasttext.percentiles(ft, crawls), texts, crawls)
    # The two signals disagree exactly, so before its own calibration every page is near the middle.
    assert np.abs(combined.mix(fasttext.percentiles(ft, crawls), scores, crawls) - 50).max() < 3
    again = from_json(None, combined.to_json())
    assert np.allclose(again.place(fasttext.percentiles(ft, crawls), texts, crawls)[1], percentiles)
    with pytest.raises(ValueError, match="needs the reference LM"):
        from_json(None, {**combined.to_json(), "order": [REFERENCE_LM]})


def test_a_calibration_stored_before_the_length_signal_still_combines_the_lm_alone(lm, reference):
    texts, crawls, shards, ft = _crawl_sample(lm, reference)
    fasttext = SignalCalibration.fit(ft, crawls, shards, 100, 2)
    stored = fit_combined([REFERENCE_LM], lm, fasttext, ft, texts, crawls, shards, "mean", 100, 2).to_json()
    del stored["order"]  # what quality_classifier code version 2 wrote
    scores, _ = from_json(lm, stored).place(fasttext.percentiles(ft, crawls), texts, crawls)
    assert list(scores) == [REFERENCE_LM]


def test_extra_signal_names_follow_the_switches_in_combination_order():
    from dataset_assets.quality.training import extra_signal_names

    assert extra_signal_names(True, True, False) == ["reference_lm", "length"]
    assert extra_signal_names(False, True, True) == ["length", "embedding"]
    assert extra_signal_names(False, False, False) == []


def test_an_unknown_combination_rule_is_refused_by_name():
    from dataset_assets.quality.training import check_rule

    with pytest.raises(ValueError, match="combine must be one of .*'median'"):
        check_rule("median")


def test_fitted_signals_store_each_calibration_and_a_digest_that_follows_them():
    from dataset_assets.quality.training import fit_signals

    texts = [" ".join(["word"] * n) for n in range(1, 201)]
    crawl = (texts, ["c"] * 200, [f"s{i % 3}" for i in range(200)])
    scores = np.linspace(0, 1, 200)
    fasttext = SignalCalibration.fit(scores, crawl[1], crawl[2], 100, 2)
    fitted = fit_signals(["length"], ["reference text"], fasttext, scores, crawl, "mean", 100, 2)
    assert fitted.lm is None and fitted.entry["order"] == ["length"] and fitted.entry["rule"] == "mean"
    summary = fitted.quantile_summary()["length"]
    assert summary["p10"] < summary["p50"] < summary["p90"] <= 200
    other = fit_signals(["length"], ["reference text"], fasttext, scores, crawl, "max", 100, 2)
    assert other.digest() != fitted.digest()
