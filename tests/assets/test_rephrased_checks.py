"""The synthetic-text checks inside the `rephrased` asset: planted template duplicates, the asset
checks a partition reports, the manifest's measures, and what corpus_stats makes of them."""

from __future__ import annotations

import pyarrow as pa
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, Definitions

from dataset_assets.defs.crawl import crawl_docs
from dataset_assets.defs.quality import quality_classifier
from dataset_assets.defs.rephrase import rephrased
from dataset_assets.defs.seeds import seeds
from dataset_assets.orchestration.graph import crawl_shards
from dataset_assets.quality.seeds import SEED_SCHEMA
from dataset_assets.rephrase.store import finished_partitions
from dataset_assets.stats.synthetic import mixture_quality, quality_png, strategy_quality
from resources.lake import Lake
from resources.landing import CrawlLanding
from resources.llm import Completion
from tests.conftest import distinct_english
from tests.support.engines import ScriptedEngine, scripted_answer

# One Q/A text (without figures) that several different documents get back.
PLANTED = "".join(c for c in scripted_answer(distinct_english(300)) if not c.isdigit())


class TemplatedEngine(ScriptedEngine):
    """Answers documents whose id ends in 7, 8 or 9 with the same text: planted near duplicates."""

    def _generate(self, requests):
        out = []
        for req in requests:
            prompt = req.messages[-1]["content"]
            doc_id = req.request_id  # item id: a hash; the document's marker is in its text
            planted = "PLANT" in prompt
            text = (PLANTED + (" Indeed." if prompt.count("PLANT") % 2 else "")) if planted else scripted_answer(prompt)
            out.append(Completion(doc_id, text.replace("PLANT", ""), 200, 120, "stop"))
        return out


def seed_table(shard: str, n: int, planted: set[int]) -> pa.Table:
    rows = []
    for i in range(n):
        row = {name: None for name in SEED_SCHEMA.names}
        text = distinct_english(i) + (" PLANT" * (1 + i % 2) if i in planted else "")
        row.update(
            id=f"{shard}-{i:02d}",
            text=text,
            shard=shard,
            url=f"http://x/{shard}/{i}",
            lang="en",
            quality_score=0.9,
            quality_percentile=95.0,
            kept=True,
            drop_reason=None,
        )
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=SEED_SCHEMA)


def run(lake, engine, shard="sa", strategy="qa"):
    defs = Definitions(
        assets=[crawl_docs, quality_classifier, seeds, rephrased],
        resources={"lake": lake, "landing": CrawlLanding(location=str(lake.root)), "engine": engine},
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, [shard])
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("rephrased")],
        partition_key=f"{shard}|{strategy}",
        run_config={"ops": {"rephrased": {"config": {"chunk_docs": 4}}}},
    )


def test_planted_template_duplicates_are_dropped_across_chunks_and_reported(tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    lake.write_partition("seeds", {"shard": "sa"}, seed_table("sa", 20, {7, 12, 18}).to_batches(), SEED_SCHEMA)
    result = run(lake, TemplatedEngine())
    assert result.success
    rows = {r["source_id"]: r for r in lake.read_partition("rephrased", {"shard": "sa", "strategy": "qa"}).to_pylist()}
    # Three chunks apart, one cluster: the smallest id is kept, the others point at it.
    keeper = rows["sa-07"]
    assert keeper["kept"] and keeper["flags"] == []
    for dup in ("sa-12", "sa-18"):
        assert rows[dup]["drop_reason"] == "template_duplicate" and rows[dup]["duplicate_of"] == keeper["id"]
        assert rows[dup]["text"] == PLANTED or rows[dup]["text"].startswith(PLANTED)  # dropped rows keep their text
    assert sum(r["kept"] for r in rows.values()) == 18
    # The Q/A outputs of the other documents share labels and question stems: none is a duplicate.
    assert all(r["duplicate_of"] is None for k, r in rows.items() if k not in ("sa-12", "sa-18"))

    ((shard, strategy, manifest),) = finished_partitions(lake)
    q = manifest["quality"]
    assert q["rows"] == 20 and q["kept"] == 18 and q["drops"] == {"template_duplicate": 2}
    assert q["template_duplicate_share"] == 0.1 and q["formats"]["qa_pairs"] > 0.9 and 0 < q["distinct_2"] <= 1
    assert manifest["checks"]["template_duplicate_share"]["severity"] == "warn"  # 10% is the default WARN level

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"kept_share", "template_duplicate_share", "repetition_share"}
    assert (
        not checks["template_duplicate_share"].passed
        and checks["template_duplicate_share"].severity == AssetCheckSeverity.WARN
    )
    assert checks["kept_share"].passed and checks["repetition_share"].passed
    mat = result.get_asset_materialization_events()[0].event_specific_data.materialization
    assert "template_duplicate" in mat.metadata["dropped_samples"].value

    by_strategy = strategy_quality(finished_partitions(lake))
    assert [(r["strategy"], r["kept"], r["template_duplicate_share"]) for r in by_strategy] == [("qa", 18, 0.1)]
    assert quality_png(by_strategy)[:8] == b"\x89PNG\r\n\x1a\n"
    mix = mixture_quality([("demo", "v1", {"achieved_shares": {"natural": 0.7, "qa": 0.3}})], {"qa": by_strategy[0]})
    assert mix == [{**mix[0], "mixture": "demo@v1", "synthetic_share": 0.3, "template_duplicate_share": 0.1}]


def test_rerun_recomputes_template_verdicts_instead_of_stacking_them(tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    lake.write_partition("seeds", {"shard": "sa"}, seed_table("sa", 8, {1, 2}).to_batches(), SEED_SCHEMA)
    assert run(lake, TemplatedEngine()).success
    first = lake.read_partition("rephrased", {"shard": "sa", "strategy": "qa"}).to_pylist()
    assert run(lake, TemplatedEngine()).success  # every chunk reused
    second = lake.read_partition("rephrased", {"shard": "sa", "strategy": "qa"}).to_pylist()

    def strip(rows):
        return sorted((r["id"], r["kept"], r["drop_reason"], tuple(r["flags"]), r["duplicate_of"]) for r in rows)

    assert strip(first) == strip(second)
    assert [r["flags"] for r in second].count(["template_duplicate"]) == 1


class CollapsedEngine(ScriptedEngine):
    """A generator collapsed into one paragraph: documents marked PLANT get it, one topic word changed."""

    def _generate(self, requests):
        out = []
        for n, req in enumerate(requests):
            prompt = req.messages[-1]["content"]
            if "PLANT" in prompt:
                word = f"subject{abs(hash(prompt)) % 10_000}"
                text = (
                    f"This article explains the main facts about {word}. It covers the background of the story, the "
                    "people who were involved in it and the outcome that followed, and it closes with a short account "
                    "of what happened next and of why the whole matter still matters to many readers today. It is "
                    "written for a general audience and it avoids technical terms wherever it can do so."
                )
            else:
                text = scripted_answer(prompt)
            out.append(Completion(req.request_id, text, 200, 120, "stop"))
        return out


def test_a_collapsed_generator_fails_the_partition_check_at_error(tmp_path):
    """Most of the partition is one template paragraph: the rows are template duplicates of each other
    (not the strategy's template), the partition's check fails at ERROR, and `mixtures` would leave it out."""
    lake = Lake(root=str(tmp_path / "lake"))
    lake.write_partition(
        "seeds", {"shard": "sa"}, seed_table("sa", 20, set(range(0, 20, 2)) | {1, 3, 5}).to_batches(), SEED_SCHEMA
    )
    result = run(lake, CollapsedEngine(), strategy="summary")
    rows = lake.read_partition("rephrased", {"shard": "sa", "strategy": "summary"}).to_pylist()
    planted = [r for r in rows if "subject" in (r["text"] or "")]
    eligible = [r for r in planted if r["flags"] in ([], ["template_duplicate"])]  # passed the row checks
    assert len(planted) == 13 and len(eligible) >= 8
    assert sum(r["drop_reason"] == "template_duplicate" for r in eligible) == len(eligible) - 1  # one is kept
    ((_, _, manifest),) = finished_partitions(lake)
    assert manifest["checks"]["template_duplicate_share"]["severity"] == "error"
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["template_duplicate_share"]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
