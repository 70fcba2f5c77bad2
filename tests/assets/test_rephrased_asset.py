"""`rephrased` through Dagster with the real vLLM engine on the tiny model: one engine for a
multi-partition run, rows per kept seed, accounting in the metadata, no processes left behind."""

from __future__ import annotations

import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance, Definitions

from dataset_assets.defs.crawl import crawl_docs
from dataset_assets.defs.quality import quality_classifier
from dataset_assets.defs.rephrase import rephrased
from dataset_assets.defs.seeds import seeds
from dataset_assets.orchestration.graph import crawl_shards
from dataset_assets.quality.seeds import SEED_SCHEMA
from resources.lake import Lake
from resources.landing import CrawlLanding
from tests.conftest import english

pytest.importorskip("vllm", reason="needs the cpu (or gpu) extra: make test installs it")


def seed_table(shard: str, n: int) -> pa.Table:
    rows = []
    for i in range(n):
        row = {name: None for name in SEED_SCHEMA.names}
        row.update(
            id=f"{shard}-{i}",
            text=english(i) + " " + english(i + 50),
            shard=shard,
            url=f"http://x/{shard}/{i}",
            quality_score=0.9,
            quality_percentile=95.0,
            kept=i != 1,
            drop_reason=None if i != 1 else "low_quality",
        )
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=SEED_SCHEMA)


def test_one_run_serves_many_partitions_with_one_engine(tmp_path, tiny_model, monkeypatch):
    from tests.assets.test_engines import cpu_engine, vllm_processes

    lake = Lake(root=str(tmp_path / "lake"))
    for shard in ("sa", "sb"):
        lake.write_partition("seeds", {"shard": shard}, seed_table(shard, 3).to_batches(), SEED_SCHEMA)
    engine = cpu_engine(tiny_model, max_model_len=1024)
    defs = Definitions(
        assets=[crawl_docs, quality_classifier, seeds, rephrased],
        resources={"lake": lake, "landing": CrawlLanding(location=str(tmp_path)), "engine": engine},
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, ["sa", "sb"])
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("rephrased")],
        tags={"dagster/asset_partition_range_start": "sa|summary", "dagster/asset_partition_range_end": "sb|tutorial"},
        run_config={"ops": {"rephrased": {"config": {"max_output_tokens": 24, "chunk_docs": 1}}}},
    )
    assert result.success
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    keys = sorted(str(m.partition) for m in mats)
    assert keys == [
        "sa|summary",
        "sa|table",
        "sa|textbook",
        "sa|tutorial",
        "sb|summary",
        "sb|table",
        "sb|textbook",
        "sb|tutorial",
    ]
    meta = {k: v.value for k, v in mats[0].metadata.items()}
    assert meta["partitions"] == 8 and meta["engine_loads"] == 1
    assert meta["rows"] == 16 and meta["completion_tokens"] > 0 and meta["output_tokens_per_s"] > 0
    assert meta["usd_per_billion_output_tokens"] > 0 and meta["engine_requests"] == 8 * 2 + 2 * 2  # textbook: two steps
    for shard in ("sa", "sb"):
        rows = lake.read_partition("rephrased", {"shard": shard, "strategy": "summary"}).to_pylist()
        assert sorted(r["source_id"] for r in rows) == [f"{shard}-0", f"{shard}-2"]  # the kept seeds, once each
        assert all(r["generator"] == engine.generator and 0 < r["completion_tokens"] <= 24 for r in rows)
        assert all(r["kept"] or r["drop_reason"] for r in rows)
    assert not vllm_processes()  # the engine was torn down with the run
