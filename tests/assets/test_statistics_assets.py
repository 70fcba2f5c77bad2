"""The statistics assets through Dagster on a tmp lake of fake crawl_docs, seeds and rephrased partitions."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize
from tokenizers import Tokenizer

from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
from dataset_assets.orchestration.graph import crawl_shards, strategies
from dataset_assets.quality.seeds import SEED_SCHEMA
from dataset_assets.rephrase.store import REPHRASED_SCHEMA
from dataset_assets.stats import STATS_SCHEMA
from dataset_assets.stats.unigrams import counts_from_table
from resources.lake import Lake
from resources.tokenizer import TokenizerResource
from tests.conftest import SHARED, english

GPT2 = SHARED / "tokenizers" / "gpt2-tokenizer.json"
LLAMA3 = SHARED / "tokenizers" / "llama-3.tiktoken"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHARDS = ["s1", "s2"]
STRATEGY_A, STRATEGY_B = strategies.get_partition_keys()[:2]
DROPPED = "Zxqvbnm flibbertigibbet quuxplorator"  # text of rows with kept=False: must never be counted


def gpt2_counts(texts: list[str]) -> np.ndarray:
    tok = Tokenizer.from_file(str(GPT2))
    counts = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for text in texts:
        np.add.at(counts, tok.encode(text, add_special_tokens=False).ids, 1)
    return counts


def metadata(result, key: str) -> dict:
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    return {k: v.value for k, v in [m for m in mats if m.asset_key.to_user_string() == key][-1].metadata.items()}


def stored(lake: Lake, asset: str, partition: dict) -> np.ndarray:
    return counts_from_table(lake.read_partition(asset, partition)).counts.counts


def fake_lake(root) -> tuple[Lake, dict]:
    """Crawl documents, seeds (every third kept) and rephrased text of two strategies, in two part files."""
    lake = Lake(root=str(root))
    texts: dict = {}
    for n, shard in enumerate(SHARDS):
        docs = [
            english(10 * n + i, topic)
            for i, topic in enumerate(["bridge", "harbour", "castle", "mill", "forest", "canal"])
        ]
        texts[("crawl", shard)] = docs
        rows = [{"id": f"{shard}-{i}", "text": t, "shard": shard} for i, t in enumerate(docs)]
        lake.write_partition(
            "crawl_docs", {"shard": shard}, pa.Table.from_pylist(rows, DOCUMENT_SCHEMA).to_batches(), DOCUMENT_SCHEMA
        )
        seeds = [
            {**r, "kept": i % 3 == 0, "drop_reason": None if i % 3 == 0 else "low_quality"} for i, r in enumerate(rows)
        ]
        seeds[1]["text"] = DROPPED
        texts[("seeds", shard)] = [r["text"] for r in seeds if r["kept"]]
        lake.write_partition(
            "seeds", {"shard": shard}, pa.Table.from_pylist(seeds, SEED_SCHEMA).to_batches(), SEED_SCHEMA
        )
    for shard, strategy in [("s1", STRATEGY_A), ("s2", STRATEGY_A), ("s1", STRATEGY_B)]:
        kept = [
            f"Question: what is {t.split('.')[0].lower()}? Answer: a place by the {strategy} river."
            for t in texts[("seeds", shard)]
        ]
        rows = [
            {"id": f"{shard}-{strategy}-{i}", "text": t, "kept": True, "strategy": strategy} for i, t in enumerate(kept)
        ]
        rows.append({"id": "x", "text": DROPPED, "kept": False, "drop_reason": "too_short"})
        rows.append({"id": "y", "text": None, "kept": True})
        part = {"shard": shard, "strategy": strategy}
        lake.write_partition(
            "rephrased", part, pa.Table.from_pylist(rows[:1], REPHRASED_SCHEMA).to_batches(), REPHRASED_SCHEMA
        )
        second = f"{lake.partition_path('rephrased', part)}/part-00001.parquet"  # the contract allows several parts
        lake.write_parquet(second, pa.Table.from_pylist(rows[1:], REPHRASED_SCHEMA).to_batches(), REPHRASED_SCHEMA)
        texts[("rephrased", shard, strategy)] = kept
    return lake, texts


@pytest.fixture(scope="module")
def references_dir(tmp_path_factory):
    refs = tmp_path_factory.mktemp("references")
    (refs / "wiki.txt").write_text(
        " = Old Bridge = \n\n The bridge was built in 1820 .\nIt crosses the river .\n\n\nA second paragraph about "
        "stone .\n"
    )
    (refs / "news").mkdir()
    (refs / "news" / "a.txt").write_text("Markets rose on Monday.\n\nThe council met on Tuesday.\n")
    (refs / "news" / "b.txt").write_text("Rain is expected over the harbour this weekend.\n")
    return refs


@pytest.fixture(scope="module")
def stats_module(references_dir):
    """The module re-imported with STATS_REFERENCES set: its partitions are read when it loads."""
    patch = pytest.MonkeyPatch()
    patch.setenv("STATS_REFERENCES", str(references_dir))
    module = importlib.reload(importlib.import_module("dataset_assets.defs.stats"))
    yield module
    patch.undo()
    importlib.reload(module)


@pytest.fixture(scope="module")
def env(stats_module, tmp_path_factory):
    lake, texts = fake_lake(tmp_path_factory.mktemp("lake"))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, SHARDS)
    m = stats_module
    assets = [m.natural_unigrams, m.seed_unigrams, m.rephrased_unigrams, m.reference_unigrams, m.corpus_stats]
    resources = {"lake": lake, "tokenizer": TokenizerResource(path=str(GPT2), batch_size=4)}

    def run(selection, partition_key=None, run_config=None, tokenizer=None, raise_on_error=True):
        return materialize(
            assets,
            selection=selection,
            partition_key=partition_key,
            resources={**resources, **({"tokenizer": tokenizer} if tokenizer else {})},
            instance=instance,
            run_config=run_config or {},
            raise_on_error=raise_on_error,
        )

    meta = {}
    for shard in SHARDS:
        meta[("natural", shard)] = metadata(run([m.natural_unigrams], shard), "natural_unigrams")
        meta[("seeds", shard)] = metadata(run([m.seed_unigrams], shard), "seed_unigrams")
    for shard, strategy in [("s1", STRATEGY_A), ("s2", STRATEGY_A), ("s1", STRATEGY_B)]:
        meta[(shard, strategy)] = metadata(run([m.rephrased_unigrams], f"{shard}|{strategy}"), "rephrased_unigrams")
    for name in ("news", "wiki"):
        meta[name] = metadata(run([m.reference_unigrams], name), "reference_unigrams")
    meta["stats"] = metadata(run([m.corpus_stats]), "corpus_stats")
    table = pq.read_table(lake.path("corpus_stats", "part-00000.parquet"))
    return {
        "lake": lake,
        "texts": texts,
        "meta": meta,
        "run": run,
        "module": m,
        "table": table,
        "rows": table.to_pylist(),
        "instance": instance,
    }


def row(env, corpus, reference):
    return next(r for r in env["rows"] if r["corpus"] == corpus and r["reference"] == reference)


# -- unigram partitions ----------------------------------------------------------------------------
def test_references_are_one_partition_per_file_or_folder(stats_module):
    assert stats_module.references.get_partition_keys() == ["news", "wiki"]


def test_natural_counts_equal_a_direct_tokenizers_count(env):
    for shard in SHARDS:
        assert np.array_equal(
            stored(env["lake"], "natural_unigrams", {"shard": shard}), gpt2_counts(env["texts"][("crawl", shard)])
        )
    meta = env["meta"][("natural", "s1")]
    assert meta["documents"] == 6 and meta["tokens"] == gpt2_counts(env["texts"][("crawl", "s1")]).sum()
    assert meta["tokenizer"] == "gpt2-tokenizer" and meta["vocab_size"] == 50_257
    assert meta["seconds"] > 0 and meta["tokens_per_s"] > 0 and 0 < meta["distinct_tokens"] < meta["tokens"]


def test_a_backfill_run_counts_each_shard_of_its_range_as_a_one_shard_run_would(env):
    """What automation's backfills and the multi-run policy launch: one run over a range of shards."""
    from dataset_assets.orchestration.shard_runs import shard_backfill_policy

    m = env["module"]
    assert m.natural_unigrams.backfill_policy == shard_backfill_policy() == m.seed_unigrams.backfill_policy
    result = materialize(
        [m.natural_unigrams],
        resources={"lake": env["lake"], "tokenizer": TokenizerResource(path=str(GPT2), batch_size=4)},
        tags={"dagster/asset_partition_range_start": SHARDS[0], "dagster/asset_partition_range_end": SHARDS[-1]},
        instance=env["instance"],
    )
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert sorted(x.partition for x in mats) == sorted(SHARDS)
    meta = {k: v.value for k, v in mats[0].metadata.items()}
    for shard in SHARDS:
        assert np.array_equal(
            stored(env["lake"], "natural_unigrams", {"shard": shard}), gpt2_counts(env["texts"][("crawl", shard)])
        )
        assert meta["per_shard"][shard]["tokens"] == env["meta"][("natural", shard)]["tokens"]
    assert meta["shards"] == len(SHARDS) and meta["tokens"] == sum(
        env["meta"][("natural", s)]["tokens"] for s in SHARDS
    )
    assert meta["vocab_size"] == 50_257 and meta["tokenizer"] == "gpt2-tokenizer" and "distinct_tokens" not in meta
    assert meta["tokens_per_s"] == round(meta["tokens"] / meta["seconds"], 1)
    # rephrased_unigrams: a (shard x strategy) range, each pair counted under its own key.
    assert m.rephrased_unigrams.backfill_policy == shard_backfill_policy()
    pairs = materialize(
        [m.rephrased_unigrams],
        resources={"lake": env["lake"], "tokenizer": TokenizerResource(path=str(GPT2), batch_size=4)},
        tags={
            "dagster/asset_partition_range_start": f"s1|{STRATEGY_A}",
            "dagster/asset_partition_range_end": f"s2|{STRATEGY_A}",
        },
        instance=env["instance"],
    )
    mats = [e.event_specific_data.materialization for e in pairs.get_asset_materialization_events()]
    assert sorted(str(x.partition) for x in mats) == [f"s1|{STRATEGY_A}", f"s2|{STRATEGY_A}"]
    meta = {k: v.value for k, v in mats[0].metadata.items()}
    assert meta["documents"] == sum(env["meta"][(s, STRATEGY_A)]["documents"] for s in SHARDS)
    part = {"shard": "s1", "strategy": STRATEGY_A}
    assert np.array_equal(
        stored(env["lake"], "rephrased_unigrams", part), gpt2_counts(env["texts"][("rephrased", "s1", STRATEGY_A)])
    )


def test_seed_and_rephrased_counts_hold_only_kept_rows_of_every_part_file(env):
    lake, texts = env["lake"], env["texts"]
    assert np.array_equal(stored(lake, "seed_unigrams", {"shard": "s2"}), gpt2_counts(texts[("seeds", "s2")]))
    part = {"shard": "s1", "strategy": STRATEGY_A}
    assert np.array_equal(stored(lake, "rephrased_unigrams", part), gpt2_counts(texts[("rephrased", "s1", STRATEGY_A)]))
    assert env["meta"][("s1", STRATEGY_A)]["documents"] == 2  # the None text and the dropped row are not documents
    for token in Tokenizer.from_file(str(GPT2)).encode(" flibbertigibbet").ids[1:]:
        assert stored(lake, "seed_unigrams", {"shard": "s1"})[token] == 0


def test_a_reference_folder_is_all_its_files_split_on_blank_lines(env):
    assert env["meta"]["news"]["documents"] == 3 and env["meta"]["wiki"]["documents"] == 3
    folder = [
        "Markets rose on Monday.",
        "The council met on Tuesday.",
        "Rain is expected over the harbour this weekend.",
    ]
    assert np.array_equal(stored(env["lake"], "reference_unigrams", {"reference": "news"}), gpt2_counts(folder))


def test_wikitext_references_are_detokenised_into_articles(stats_module, tmp_path):
    wikitext = tmp_path / "wikitext-2-test.txt"
    wikitext.write_text(" = Title = \n \n The state @-@ run bridge , built in 1820 , is <unk> old . \n")
    from dataset_assets.stats.references import reference_corpus_documents, reference_name

    assert reference_name(wikitext) == "wikitext-2-test"
    assert list(reference_corpus_documents(wikitext)) == ["The state-run bridge, built in 1820, is old."]


def test_a_missing_upstream_partition_fails_with_what_to_materialise(env):
    env["lake"].fs.delete_dir(env["lake"].partition_path("crawl_docs", {"shard": "s2"}))
    try:
        result = env["run"]([env["module"].natural_unigrams], "s2", raise_on_error=False)
    finally:
        fake_docs = [{"id": "d", "text": t, "shard": "s2"} for t in env["texts"][("crawl", "s2")]]
        batches = pa.Table.from_pylist(fake_docs, DOCUMENT_SCHEMA).to_batches()
        env["lake"].write_partition("crawl_docs", {"shard": "s2"}, batches, DOCUMENT_SCHEMA)
    message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "no crawl_docs data" in message and "materialise crawl_docs" in message


# -- corpus_stats ----------------------------------------------------------------------------------
def test_table_has_one_row_per_corpus_and_reference_with_every_column(env):
    corpora = ["natural", "seeds", *sorted([STRATEGY_A, STRATEGY_B]), "news", "wiki"]
    assert [(r["corpus"], r["reference"]) for r in env["rows"]] == [
        (c, ref) for c in corpora for ref in ("news", "wiki")
    ]
    assert env["table"].schema.names == STATS_SCHEMA.names
    assert {r["kind"] for r in env["rows"]} == {"natural", "seeds", "strategy", "reference"}
    assert b"Lidstone" in env["table"].schema.metadata[b"smoothing"]


def test_corpus_totals_are_the_sums_of_their_partitions(env):
    natural = row(env, "natural", "wiki")
    expected = gpt2_counts(env["texts"][("crawl", "s1")] + env["texts"][("crawl", "s2")])
    assert natural["tokens"] == expected.sum() and natural["distinct_tokens"] == np.count_nonzero(expected)
    assert natural["partitions"] == 2 and natural["documents"] == 12
    assert row(env, STRATEGY_B, "wiki")["partitions"] == 1


def test_kl_of_a_reference_against_itself_is_only_the_smoothing(env):
    wiki = row(env, "wiki", "wiki")
    alpha, n = wiki["smoothing_alpha"], wiki["tokens"]
    # q_i >= c_i / (N + alpha V), so KL(p || q) <= log2(1 + alpha V / N); JS needs no smoothing
    assert 0 < wiki["kl_bits"] <= math.log2(1 + alpha * 50_257 / n) + 1e-12
    assert wiki["js_bits"] == pytest.approx(0, abs=1e-12) and wiki["coverage"] == pytest.approx(1)
    unsmoothed = env["run"](
        [env["module"].corpus_stats], run_config={"ops": {"corpus_stats": {"config": {"smoothing_alpha": 1e-12}}}}
    )
    records = metadata(unsmoothed, "corpus_stats")["table"].records
    assert next(r.data for r in records if r.data["corpus"] == "wiki" and r.data["reference"] == "wiki")["kl_bits"] == 0


def test_divergences_are_bounded_and_top_tokens_are_decoded(env):
    for r in env["rows"]:
        assert 0 <= r["js_bits"] <= 1 and 0 <= r["coverage"] <= 1 and r["kl_bits"] >= 0
    natural = row(env, "natural", "news")
    top = json.loads(natural["top_kl_tokens"])
    assert top and {"token_id", "token", "p_ref", "p_corpus", "contribution"} <= set(top[0])
    assert any(t["token"].strip() in ("Markets", "Monday", "Tuesday", "Rain") for t in top)
    assert top == sorted(top, key=lambda t: -t["contribution"])


def test_support_shrinkage_is_measured_against_the_seeds_of_the_same_shards(env):
    lake = env["lake"]
    b = row(env, STRATEGY_B, "wiki")  # STRATEGY_B covers s1 only
    source = stored(lake, "seed_unigrams", {"shard": "s1"})
    derived = stored(lake, "rephrased_unigrams", {"shard": "s1", "strategy": STRATEGY_B})
    lost = np.count_nonzero((source > 0) & (derived == 0)) / np.count_nonzero(source)
    assert b["source"] == "seeds" and b["support_lost"] == pytest.approx(lost) and 0 < lost < 1
    assert b["types_ratio"] == pytest.approx(np.count_nonzero(derived) / np.count_nonzero(source))
    assert row(env, "natural", "wiki")["support_lost"] is None


def test_plots_are_written_to_the_lake_and_shown_inline(env):
    lake, meta = env["lake"], env["meta"]["stats"]
    for name in ("zipf.png", "kl.png"):
        assert lake.get_bytes(["corpus_stats", name]).startswith(PNG_MAGIC)
    for key in ("zipf_plot", "kl_plot"):
        assert meta[key].startswith("![") and "(data:image/png;base64," in meta[key]
    assert "Lidstone" in meta["smoothing"] and "0.01" in meta["smoothing"]
    assert len(meta["table"].records) == len(env["rows"]) and "zipf_exponent" in meta["table"].records[0].data
    assert "| natural | news |" in meta["top_kl_tokens"]


def test_missing_families_are_absent_rows(stats_module, tmp_path):
    lake, _ = fake_lake(tmp_path / "lake")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, SHARDS)
    resources = {"lake": lake, "tokenizer": TokenizerResource(path=str(GPT2))}
    m = stats_module
    materialize([m.natural_unigrams], partition_key="s1", resources=resources, instance=instance)
    result = materialize([m.corpus_stats], resources=resources, instance=instance)
    rows = pq.read_table(lake.path("corpus_stats", "part-00000.parquet")).to_pylist()
    assert [(r["corpus"], r["reference"], r["kl_bits"]) for r in rows] == [("natural", None, None)]
    assert metadata(result, "corpus_stats")["kl_plot"].startswith("![kl]")


def test_an_empty_lake_fails_with_what_to_materialise(stats_module, tmp_path):
    result = materialize(
        [stats_module.corpus_stats],
        resources={"lake": Lake(root=str(tmp_path)), "tokenizer": TokenizerResource(path=str(GPT2))},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "materialise natural_unigrams" in failure.event_specific_data.error.message


def test_counts_from_another_tokenizer_are_refused_by_name(env):
    result = env["run"](
        [env["module"].corpus_stats], tokenizer=TokenizerResource(path=str(LLAMA3)), raise_on_error=False
    )
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "another tokenizer than llama-3" in message and "gpt2-tokenizer" in message and "Rematerialise" in message


def test_a_partition_without_kept_rows_is_an_empty_vector_and_still_a_row(stats_module, tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    dropped = [{"id": "x", "text": DROPPED, "kept": False, "drop_reason": "too_short"}]
    part = {"shard": "s1", "strategy": STRATEGY_A}
    lake.write_partition(
        "rephrased", part, pa.Table.from_pylist(dropped, REPHRASED_SCHEMA).to_batches(), REPHRASED_SCHEMA
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, ["s1"])
    resources = {"lake": lake, "tokenizer": TokenizerResource(path=str(GPT2))}
    m = stats_module
    counted = materialize(
        [m.rephrased_unigrams], partition_key=f"s1|{STRATEGY_A}", resources=resources, instance=instance
    )
    assert (
        metadata(counted, "rephrased_unigrams")["tokens"] == 0 and stored(lake, "rephrased_unigrams", part).sum() == 0
    )
    result = materialize([m.corpus_stats], resources=resources, instance=instance)
    (record,) = metadata(result, "corpus_stats")["table"].records
    assert record.data["tokens"] == 0 and record.data["zipf_exponent"] is None and record.data["support_lost"] is None


def test_every_compared_corpus_is_also_measured_at_the_smallest_ones_size_with_intervals(env):
    rows = [r for r in env["rows"] if r["kind"] != "reference"]
    budget = min(r["tokens"] for r in rows)
    assert {r["matched_tokens"] for r in rows} == {budget} and env["meta"]["stats"]["matched_tokens"] == budget
    for r in rows:
        assert r["matched_note"] is None
        # Six or fewer documents per corpus here: too few to resample documents, so tokens are, and the row says so.
        assert r["matched_unit"] == "tokens"
        assert r["kl_bits_low"] <= r["kl_bits_matched"] <= r["kl_bits_high"]
        assert r["js_bits_low"] <= r["js_bits_matched"] <= r["js_bits_high"]
        assert r["distinct_tokens_matched"] <= r["distinct_tokens"]
    assert all(r["matched_tokens"] is None for r in env["rows"] if r["kind"] == "reference")
    assert env["lake"].exists(["corpus_stats", "kl_matched.png"])
    # Each counted partition keeps its documents' own counts beside its vector, for the bootstrap.
    assert env["lake"].has_partition("natural_unigrams_documents", {"shard": "s1"})


def test_diversity_puts_natural_text_seeds_and_each_strategy_side_by_side_at_one_size(env):
    rows = json.loads(env["lake"].get_bytes(["corpus_stats", "diversity.json"]))
    assert sorted(r["corpus"] for r in rows) == sorted(["natural", "seeds", STRATEGY_A, STRATEGY_B])
    assert len({r["matched_words"] for r in rows}) == 1 and rows[0]["matched_words"] > 0  # one matched size
    for r in rows:
        assert 0 < r["distinct_1"] <= 1 and 0 < r["compression_ratio"] < 1
        assert 0 <= r["self_similarity_above_half"] <= 1 and set(r["reference_vocabulary_covered"]) == {"news", "wiki"}
    assert env["lake"].exists(["corpus_stats", "diversity.png"]) and "diversity" in env["meta"]["stats"]
