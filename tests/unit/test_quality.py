"""Quality classifier maths, Gopher rules and seed selection."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dataset_assets.quality import classifier
from dataset_assets.quality.heuristics import GopherRules, gopher_reason
from dataset_assets.quality.reference import reference_documents, wikitext_articles
from dataset_assets.quality.seeds import KeepRule
from tests.conftest import QUALITY, english


def test_roc_auc_known_values():
    labels = np.array([1, 1, 0, 0])
    assert classifier.roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert classifier.roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert classifier.roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert classifier.roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.7, 0.6, 0.1])) == 0.75


def test_percentile_against_calibration_quantiles():
    calibration = classifier.quantiles(np.linspace(0, 1, 1001))
    pct = classifier.percentile(np.array([0.0, 0.25, 0.9, 1.0]), calibration)
    assert np.allclose(pct, [0, 25, 90, 100], atol=0.2)
    tied = classifier.quantiles(np.array([0.0] * 50 + list(np.linspace(0.1, 1, 50))))
    assert 20 < classifier.percentile(np.array([0.0]), tied)[0] < 30  # middle of the tied range


def test_keep_rule_top_fraction_and_threshold():
    scores = np.array([0.1, 0.5, 0.95])
    pct = np.array([10.0, 50.0, 95.0])
    assert KeepRule(top_fraction=0.1).keeps(scores, pct).tolist() == [False, False, True]
    assert KeepRule(top_fraction=None, min_score=0.4).keeps(scores, pct).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="exactly one"):
        KeepRule(top_fraction=0.1, min_score=0.5)


GOOD = english(1) + " " + english(2)


@pytest.mark.parametrize(
    "text,reason",
    [
        (GOOD, None),
        ("the and of " * 5, "gopher_word_count"),
        (" ".join(["a"] * 60) + " the and", "gopher_mean_word_length"),
        (" ".join(["supercalifragilistic"] * 60) + " the and", "gopher_mean_word_length"),
        (GOOD + " #" * 40, "gopher_symbol_ratio"),
        ("\n".join(f"{english(i)[:80]}..." for i in range(6)), "gopher_ellipsis_lines"),
        (GOOD + " " + " ".join(["1234", "5678", "|", "--"] * 20), "gopher_alpha_words"),
        (" ".join(["river", "bridge", "market", "stone", "granite"] * 15), "gopher_stop_words"),
    ],
)
def test_each_gopher_rule_drops_with_its_own_reason(text, reason):
    assert gopher_reason(text, GopherRules()) == reason


def test_wikitext_is_split_into_articles_and_detokenised():
    lines = [
        " = First = \n",
        " The river @-@ side town , known for <unk> bridges . \n",
        " = = Section = = \n",
        " More text . \n",
        " = Second = \n",
        " Body . \n",
    ]
    articles = list(wikitext_articles(iter(lines)))
    assert len(articles) == 2
    assert articles[0] == "The river-side town, known for bridges.\nSection\nMore text."


def test_reference_corpora_load_from_shared_data():
    docs = reference_documents(str(QUALITY))
    assert set(docs) == {"abc-news-lee.txt", "enwiki-206-pages.xml.bz2", "wikitext-2-valid.txt"}
    assert len(docs["enwiki-206-pages.xml.bz2"]) > 50 and not any(
        "{{" in d for d in docs["enwiki-206-pages.xml.bz2"][:20]
    )
    assert all("@-@" not in d for d in docs["wikitext-2-valid.txt"])


def test_trained_classifier_separates_reference_from_crawl_junk(tmp_path):
    hq = [seg for docs in reference_documents(str(QUALITY)).values() for d in docs for seg in classifier.segments(d)]
    rng = np.random.default_rng(0)
    vocab = [
        "buy",
        "cheap",
        "click",
        "here",
        "login",
        "cart",
        "sale",
        "free",
        "shipping",
        "menu",
        "home",
        "contact",
        "cookie",
        "accept",
    ]
    cc = [" ".join(rng.choice(vocab, 120)) for _ in range(len(hq))]
    train, heldout = classifier.split_examples(hq, cc, 0.2, 0)
    model = classifier.train(train, classifier.TrainParams(epoch=5), str(tmp_path / "m.bin"))
    metrics = classifier.evaluate(model, heldout)
    assert metrics["roc_auc"] > 0.95 and metrics["precision"] > 0.9 and metrics["recall"] > 0.9
    scores = classifier.p_hq(model, [hq[0], cc[0]])
    assert scores.dtype == np.float32 and ((0 <= scores) & (scores <= 1)).all() and scores[0] > scores[1]
    reloaded = classifier.load(str(tmp_path / "m.bin"))
    assert np.allclose(classifier.p_hq(reloaded, [hq[0]]), scores[:1])


def test_seed_rows_carry_score_percentile_and_reason(tmp_path):
    from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
    from dataset_assets.quality.seeds import SEED_SCHEMA, select_seeds

    hq = [english(i, "physics") for i in range(50)]
    cc = [" ".join(["buy now cheap deal"] * 40) + f" {i}" for i in range(50)]
    model = classifier.train(
        classifier.split_examples(hq, cc, 0.1, 0)[0], classifier.TrainParams(epoch=5), str(tmp_path / "m.bin")
    )
    texts = [english(99, "physics") + " " + english(98, "physics"), "short text", " ".join(["buy now cheap deal"] * 40)]
    docs = pa.RecordBatch.from_pylist(
        [
            {name: (t if name == "text" else None) for name in DOCUMENT_SCHEMA.names} | {"id": str(i)}
            for i, t in enumerate(texts)
        ],
        schema=DOCUMENT_SCHEMA,
    )
    calibration = classifier.quantiles(classifier.p_hq(model, hq + cc))
    out = select_seeds(docs, model, calibration, KeepRule(top_fraction=0.5), GopherRules())
    assert out.schema == SEED_SCHEMA
    rows = out.to_pylist()
    assert rows[0]["kept"] and rows[0]["drop_reason"] is None
    assert rows[1]["drop_reason"] == "gopher_word_count" and not rows[1]["kept"]
    assert rows[2]["drop_reason"] in ("low_quality", "gopher_stop_words")
    assert rows[0]["quality_percentile"] > rows[2]["quality_percentile"]


def test_each_crawl_is_calibrated_against_itself_and_a_one_file_crawl_against_the_lake():
    import numpy as np

    from dataset_assets.quality.classifier import calibrated_percentiles, crawl_quantiles

    rng = np.random.default_rng(0)
    low = rng.uniform(0.0, 0.5, 400)  # crawl A: mostly poor pages, over four shards
    high = rng.uniform(0.5, 1.0, 400)  # crawl B: better pages, over two shards
    one_file = rng.uniform(0.0, 0.2, 150)  # a crawl name taken from one file
    scores = np.concatenate([low, high, one_file])
    crawls = ["A"] * 400 + ["B"] * 400 + ["junk-file"] * 150
    shards = [f"a{i % 4}" for i in range(400)] + [f"b{i % 2}" for i in range(400)] + ["junk"] * 150
    by_crawl = crawl_quantiles(scores, crawls, shards, min_documents=100, min_shards=2)
    assert sorted(by_crawl) == ["A", "B"] and by_crawl["A"]["documents"] == 400 and by_crawl["B"]["shards"] == 2
    lake_wide = [float(q) for q in np.quantile(scores, np.linspace(0, 1, 101))]
    quantiles = {k: v["quantiles"] for k, v in by_crawl.items()}
    probe = np.array([0.45, 0.45, 0.45])
    within = calibrated_percentiles(probe, ["A", "B", "junk-file"], lake_wide, quantiles)
    # The same score is near the top of crawl A, at the bottom of crawl B, and the one-file crawl
    # is judged against the whole lake, so its poor pages do not fill its own top 10%.
    assert within[0] > 85 and within[1] < 5 and 30 < within[2] < 60
    mixed = calibrated_percentiles(low[:50], ["A"] * 50, lake_wide, {"A": quantiles["A"]})
    alone = calibrated_percentiles(low[:50], ["A"] * 50, quantiles["A"], None)
    assert np.allclose(mixed, alone)  # crawl B's arrival does not move crawl A's percentiles


def test_integrity_failures_are_what_the_blocking_check_stops_for():
    from dataset_assets.quality.seed_checks import kept_share_check, validate_seeds
    from dataset_assets.quality.seeds import SEED_SCHEMA

    def table(ids, scores):
        rows = [
            {**{n: None for n in SEED_SCHEMA.names}, "id": i, "quality_score": s, "kept": False}
            for i, s in zip(ids, scores)
        ]
        return pa.Table.from_pylist(rows, schema=SEED_SCHEMA)

    assert validate_seeds(table(["a", "b"], [0.1, 0.9]), 2)[0]
    assert validate_seeds(table(["a", "b"], [0.1, 0.9]), 2)[1]["kept"] == 0  # keeping nothing is not a failure
    assert validate_seeds(table(["a", "a"], [0.1, 0.9]), 2)[1]["duplicate_ids"] == 1
    assert not validate_seeds(table(["a", "b"], [0.1, 1.5]), 2)[0]
    ok, facts = validate_seeds(table(["a"], [0.1]), 2)
    assert not ok and facts["rows_lost"] == 1
    assert kept_share_check(0, 5, 0.1, 0.25, 10)[0]  # too small a shard to judge
    assert not kept_share_check(1, 200, 0.1, 0.25, 10)[0] and kept_share_check(6, 200, 0.1, 0.25, 10)[0]


def test_the_expected_kept_share_is_the_top_fraction_or_the_calibration_above_min_score():
    from dataset_assets.quality.seed_checks import expected_kept_share

    quantiles = [i / 100 for i in range(101)]
    assert expected_kept_share(KeepRule(top_fraction=0.1), quantiles) == 0.1
    assert abs(expected_kept_share(KeepRule(top_fraction=None, min_score=0.8), quantiles) - 21 / 101) < 1e-9


def test_the_signals_are_described_in_words():
    from dataset_assets.quality.seed_checks import signals_described

    assert signals_described(None) == "the classifier alone"
    assert (
        signals_described({"order": ["reference_lm", "length"], "rule": "mean"})
        == "classifier + reference lm + length (mean of percentiles)"
    )


def test_the_seed_scorer_loads_the_lake_model_once_and_scores_in_batches(tmp_path, monkeypatch):
    from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
    from dataset_assets.quality import scorer as scorer_module
    from dataset_assets.quality.store import CALIBRATION, MODEL, QualityModelMissing
    from resources.lake import Lake

    lake = Lake(root=str(tmp_path / "lake"))
    with pytest.raises(QualityModelMissing, match="materialise quality_classifier first"):
        scorer_module.SeedScorer(lake, str(tmp_path))
    hq = [english(i, "physics") for i in range(50)]
    cc = [" ".join(["buy now cheap deal"] * 40) + f" {i}" for i in range(50)]
    model = classifier.train(
        classifier.split_examples(hq, cc, 0.1, 0)[0], classifier.TrainParams(epoch=5), str(tmp_path / "m.bin")
    )
    lake.put_file(MODEL, str(tmp_path / "m.bin"))
    lake.put_json(
        CALIBRATION,
        {
            "kind": "fasttext",
            "hq_label": classifier.HQ,
            "quantiles": classifier.quantiles(classifier.p_hq(model, hq + cc)),
        },
    )
    scorer = scorer_module.SeedScorer(lake, str(tmp_path))
    assert scorer.combined is None and scorer.by_crawl == {}
    monkeypatch.setattr(scorer_module, "BATCH_ROWS", 2)
    texts = [english(90 + i, "physics") + " " + english(80 + i, "physics") for i in range(5)]
    docs = pa.Table.from_pylist(
        [
            {name: (t if name == "text" else None) for name in DOCUMENT_SCHEMA.names} | {"id": str(i)}
            for i, t in enumerate(texts)
        ],
        schema=DOCUMENT_SCHEMA,
    )
    seen = []
    batches = scorer.score(docs, KeepRule(top_fraction=0.5), GopherRules(), {}, seen.append)
    assert [b.num_rows for b in batches] == [2, 2, 1] and seen == [2, 4, 5]
    assert [r["id"] for b in batches for r in b.to_pylist()] == [str(i) for i in range(5)]
