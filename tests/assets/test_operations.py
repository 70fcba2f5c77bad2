"""Operating the graph: the nightly backfill's selection, automation wiring, the prod profile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow as pa
from dagster import AssetKey, build_sensor_context, instance_for_test
from dagster._core.execution.backfill import BulkActionStatus

from dataset_assets.rephrase.generate import rephrase_partition
from dataset_assets.rephrase.planning import rectangles
from dataset_assets.rephrase.strategies import load_strategies
from dataset_assets.status import catalog
from dataset_assets.status.lake_walk import facts_rephrased
from resources.lake import Lake
from tests.conftest import ROOT
from tests.support.engines import ScriptedEngine
from tests.unit.test_rephrase import seeds as seed_rows


def write_docs_and_seeds(lake: Lake, shard: str) -> None:
    """What crawl_docs and seeds commit for a shard: their data, then their status catalog records."""
    from dataset_assets.quality.seeds import SEED_SCHEMA, kept_fingerprint
    from dataset_assets.status import catalog

    rows = [{**{n: None for n in SEED_SCHEMA.names}, **r, "shard": shard} for r in seed_rows(2)]
    table = pa.Table.from_pylist(rows, schema=SEED_SCHEMA)
    docs = table.select(
        [f.name for f in SEED_SCHEMA if f.name not in ("quality_score", "quality_percentile", "kept", "drop_reason")]
    )
    written = lake.write_partition("crawl_docs", {"shard": shard}, docs.to_batches(), docs.schema)
    catalog.record(lake, "crawl_docs", shard, written.data_version)
    written = lake.write_partition("seeds", {"shard": shard}, table.to_batches(), SEED_SCHEMA)
    catalog.record(
        lake,
        "seeds",
        shard,
        written.data_version,
        kept_fingerprint=kept_fingerprint(rows),
        dedup_fingerprint="not-covered",
    )


def test_rectangles_cover_exactly_the_needed_pairs():
    shards, strategies = ["a", "b", "c", "d"], ["p", "q", "r", "s"]
    every = {(x, y) for x in shards for y in strategies}
    assert rectangles(every, shards, strategies) == [(shards, strategies)]
    odd = {("a", "p"), ("b", "p"), ("d", "p"), ("a", "q"), ("b", "q"), ("d", "q"), ("c", "s")}
    blocks = rectangles(odd, shards, strategies)
    assert blocks == [(["a", "b"], ["p", "q"]), (["d"], ["p", "q"]), (["c"], ["s"])]
    assert {(x, y) for xs, ys in blocks for x in xs for y in ys} == odd


def tick(instance, lake, engine, cursor: str = "0"):
    """One evaluation of the nightly backfill sensor with a cron slot due (cursor: the last slot handled)."""
    from dataset_assets import definitions
    from dataset_assets.defs.nightly import nightly_backfill

    with build_sensor_context(
        instance=instance,
        resources={"lake": lake, "engine": engine},
        repository_def=definitions.defs.get_repository_def(),
        cursor=cursor,
    ) as context:
        return nightly_backfill(context)


def test_nightly_backfill_acts_once_per_cron_slot():
    from datetime import datetime, timezone

    from dataset_assets.defs.nightly import due_slot

    cron = "0 2 * * *"
    first = due_slot(cron, datetime(2026, 11, 21, 13, 0, tzinfo=timezone.utc), None)
    assert first[0] is None  # a new deployment waits for the next slot, as a schedule would
    slot_21 = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc).timestamp()
    assert float(first[1]) == slot_21
    assert due_slot(cron, datetime(2026, 11, 22, 1, 59, tzinfo=timezone.utc), first[1]) == (None, first[1])
    slot, cursor = due_slot(cron, datetime(2026, 11, 22, 2, 0, 30, tzinfo=timezone.utc), first[1])
    assert slot == datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc).timestamp() and float(cursor) == slot
    assert due_slot(cron, datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc), cursor) == (None, cursor)  # once per slot


def test_nightly_backfill_targets_exactly_missing_and_outdated_partitions(tmp_path, monkeypatch):
    lake = Lake(root=str(tmp_path / "lake"))
    for shard in ("s1", "s2"):
        write_docs_and_seeds(lake, shard)
    engine = ScriptedEngine()
    strategies = load_strategies(ROOT / "prompts")
    for name in strategies:
        stats = rephrase_partition(lake, engine, strategies[name], "s1", seed_rows(2), chunk_docs=4)
        catalog.record(lake, "rephrased", f"s1|{name}", **facts_rephrased(stats.manifest))  # as the asset does
    # s2 has no rephrased partition yet, s3 has nothing at all; s1 is current except one edited prompt.
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    (prompts / "faq.toml").write_text((prompts / "faq.toml").read_text().replace("top_p = 0.95", "top_p = 0.9"))
    monkeypatch.setenv("REPHRASE_PROMPTS", str(prompts))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("crawl_shards", ["s1", "s2", "s3"])
        request = tick(instance, lake, engine).run_requests[0]
        parts = {
            (ap.asset_key.to_user_string(), str(ap.partition_key))
            for ap in request.asset_graph_subset.iterate_asset_partitions()
        }
        # No shard has dedup signatures yet: each gets them, and the bands and clusters are rebuilt over all.
        from dataset_assets.orchestration.graph import dedup_bands

        dedup = {("dedup_signatures", s) for s in ("s1", "s2", "s3")} | {("dedup_clusters", "None")}
        dedup |= {("dedup_buckets", band) for band in dedup_bands.get_partition_keys()}
        expected = dedup | {("crawl_docs", "s3"), ("seeds", "s3"), ("rephrased", "s1|faq")}
        expected |= {("rephrased", f"s2|{n}") for n in strategies} | {("rephrased", f"s3|{n}") for n in strategies}
        assert parts == expected

        # Tonight's tick while that backfill is still running, and an automation run of s1|faq is about to start:
        # none of those partitions is launched a second time.
        from dagster._core.execution.backfill import PartitionBackfill
        from dagster._core.storage.dagster_run import DagsterRunStatus
        from dagster._core.test_utils import create_run_for_test

        running = PartitionBackfill.from_asset_graph_subset(
            "nightly1",
            0.0,
            {"dagster/from": "nightly_backfill"},
            instance,
            request.asset_graph_subset,
            None,
            None,
            None,
        )
        instance.add_backfill(running)
        # While its own last backfill is unfinished the sensor launches nothing, and it finds that out with
        # one query: it neither computes the status nor walks the backfill's keys.
        from dataset_assets.defs import nightly

        def no_walk(*args, **kwargs):
            raise AssertionError("the status was computed while the previous nightly backfill runs")

        monkeypatch.setattr(nightly, "needed_partitions", no_walk)
        monkeypatch.setattr(nightly, "in_flight_partitions", no_walk)
        skipped = tick(instance, lake, engine)
        assert not skipped.run_requests and "in an unfinished run or backfill" in skipped.skip_reason.skip_message
        assert "nightly1" in skipped.skip_reason.skip_message
        monkeypatch.undo()
        monkeypatch.setenv("REPHRASE_PROMPTS", str(prompts))

        instance.update_backfill(running.with_status(BulkActionStatus.COMPLETED_SUCCESS))
        create_run_for_test(
            instance,
            job_name="__ASSET_JOB",
            status=DagsterRunStatus.NOT_STARTED,
            asset_selection={AssetKey("rephrased")},
            tags={"dagster/partition": "s1|faq"},
        )
        first, last = sorted(strategies)[0], sorted(strategies)[-1]
        create_run_for_test(
            instance,
            job_name="__ASSET_JOB",
            status=DagsterRunStatus.STARTED,
            asset_selection={AssetKey("rephrased")},
            tags={
                "dagster/asset_partition_range_start": f"s2|{first}",
                "dagster/asset_partition_range_end": f"s2|{last}",
            },
        )
        request = tick(instance, lake, engine).run_requests[0]
        parts = {
            (ap.asset_key.to_user_string(), str(ap.partition_key))
            for ap in request.asset_graph_subset.iterate_asset_partitions()
        }
        assert parts == dedup | {("crawl_docs", "s3"), ("seeds", "s3")} | {("rephrased", f"s3|{n}") for n in strategies}


def test_a_large_nightly_backfill_is_split_into_bounded_parts_launched_one_after_another(tmp_path, monkeypatch):
    from dagster._core.execution.backfill import PartitionBackfill

    from dataset_assets.defs.nightly import MORE
    from dataset_assets.orchestration.graph import dedup_bands

    lake = Lake(root=str(tmp_path / "lake"))
    write_docs_and_seeds(lake, "s0")  # so the catalog exists; s0 still needs signatures and rephrasings
    strategies = load_strategies(ROOT / "prompts")
    shared = len(dedup_bands.get_partition_keys()) + 1  # the band partitions and the clusters
    per_new_shard = 3 + len(strategies)  # crawl_docs, signatures, seeds and every strategy
    monkeypatch.setenv("NIGHTLY_BACKFILL_MAX_PARTITIONS", str(shared + 2 * per_new_shard))
    engine = ScriptedEngine()
    seen: list[set] = []
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("crawl_shards", ["s0", "s1", "s2", "s3", "s4"])
        cursor = "0"
        for part in range(4):
            result = tick(instance, lake, engine, cursor)
            if not result.run_requests:
                break
            subset = result.run_requests[0].asset_graph_subset
            keys = {(ap.asset_key.to_user_string(), str(ap.partition_key)) for ap in subset.iterate_asset_partitions()}
            assert len(keys) <= shared + 2 * per_new_shard
            seen.append(
                {
                    k.split("|")[0]
                    for name, k in keys
                    if name in ("crawl_docs", "dedup_signatures", "seeds", "rephrased")
                }
            )
            cursor = result.cursor
            backfill = PartitionBackfill.from_asset_graph_subset(
                f"part{part}", 0.0, {"dagster/from": "nightly_backfill"}, instance, subset, None, None, None
            )
            instance.add_backfill(backfill)
            assert cursor.endswith(MORE) == (part < 2)
            if part == 0:  # while a part runs, the next waits and the cursor keeps the slot's remaining work
                waiting = tick(instance, lake, engine, cursor)
                assert (
                    not waiting.run_requests
                    and "part0" in waiting.skip_reason.skip_message
                    and waiting.cursor == cursor
                )
            instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_SUCCESS))
            for shard in seen[-1]:  # stands in for the part's runs: its shards need nothing more
                instance.delete_dynamic_partition("crawl_shards", shard)
        # Whole shards in key order, each in exactly one part; every part but the last leaves MORE in the cursor.
        assert seen == [{"s0", "s1"}, {"s2", "s3"}, {"s4"}]
        assert not cursor.endswith(MORE)


def test_automation_and_the_nightly_backfill_are_wired():
    from dataset_assets.definitions import defs

    rephrased = defs.resolve_assets_def(AssetKey("rephrased"))
    assert rephrased.automation_conditions_by_key[AssetKey("rephrased")] is not None
    assert rephrased.backfill_policy is not None and rephrased.backfill_policy.max_partitions_per_run is None
    assert (
        defs.get_sensor_def("automation")
        and defs.get_sensor_def("crawl_landing_sensor")
        and defs.get_sensor_def("dedup_seeds_sensor")
    )
    for name in ("dedup_buckets", "dedup_clusters"):  # the dedup stages follow new signatures by themselves
        assert defs.resolve_assets_def(AssetKey(name)).automation_conditions_by_key[AssetKey(name)] is not None
    nightly = defs.get_sensor_def("nightly_backfill")
    assert "0 2 * * *" in nightly.description and nightly.asset_selection is not None


PROD_CHECK = """
import json
from dagster import AssetKey, EnvVar
from dataset_assets.definitions import defs
lake = defs.resources["lake"]
rephrased = defs.resolve_assets_def(AssetKey("rephrased"))
op = rephrased.node_def
print(json.dumps({
    "lake_root": lake.root,
    "key_is_envvar": isinstance(lake.aws_access_key_id, EnvVar),
    "secret_is_envvar": isinstance(lake.aws_secret_access_key, EnvVar),
    "gpu": json.loads(op.tags["dagster-k8s/config"])["container_config"]["resources"]["limits"]["nvidia.com/gpu"],
    "pool": op.pool,
    "executor": defs.executor.name if defs.executor else None,
    "engine": type(defs.resources["engine"]).__name__,
}))
"""


def test_prod_profile_wires_s3_lake_gpu_requests_pool_and_k8s(tmp_path):
    env = {
        **os.environ,
        "DAGSTER_DEPLOYMENT": "prod",
        "DATASET_LAKE": "s3://datasets/lake",
        "CRAWL_LANDING": "s3://datasets/landing",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
        "REPHRASE_ENGINE": "http://vllm.internal:8000/v1",
        "REPHRASE_MODEL": "HuggingFaceTB/SmolLM2-1.7B-Instruct",
        "DAGSTER_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROD_CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    import json

    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts == {
        "lake_root": "s3://datasets/lake",
        "key_is_envvar": True,
        "secret_is_envvar": True,
        "gpu": "1",
        "pool": "gpu",
        "executor": "k8s",
        "engine": "OpenAIEndpointEngine",
    }
    assert "not-a-real-secret" not in done.stdout + done.stderr


def test_prod_profile_refuses_a_local_lake(tmp_path):
    env = {
        **os.environ,
        "DAGSTER_DEPLOYMENT": "prod",
        "DATASET_LAKE": str(tmp_path),
        "CRAWL_LANDING": "s3://x/y",
        "DAGSTER_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", "import dataset_assets.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "DAGSTER_DEPLOYMENT=prod needs DATASET_LAKE and CRAWL_LANDING on S3" in done.stderr


def test_the_prod_instance_settings_are_valid_dagster_yaml(tmp_path):
    """deploy/dagster.yaml (the README's instance settings for a whole crawl) passes Dagster's own
    instance schema, and its compute log section the S3 compute log manager's."""
    import yaml
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["runs"]["max_concurrent_runs"] > 0 and config["backfills"]["use_threads"]
    logs = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["compute_logs"]
    assert logs["class"] == "S3ComputeLogManager"
    checked = validate_config(S3ComputeLogManager.config_type(), logs["config"])
    assert checked.success, checked.errors


def test_a_running_multi_shard_backfill_run_is_in_flight():
    """A crawl_docs backfill run over a shard range (the multi-run policy) counts as in flight for
    every shard of the range, as a (shard x strategy) range of rephrased does."""
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from dataset_assets import definitions
    from dataset_assets.orchestration.in_flight import in_flight_partitions

    with instance_for_test() as instance:
        instance.add_dynamic_partitions("crawl_shards", ["a", "b", "c", "d"])
        create_run_for_test(
            instance,
            job_name="__ASSET_JOB",
            status=DagsterRunStatus.STARTED,
            asset_selection={AssetKey("crawl_docs")},
            tags={"dagster/asset_partition_range_start": "b", "dagster/asset_partition_range_end": "c"},
        )
        busy = in_flight_partitions(instance, definitions.defs.resolve_asset_graph())
        assert {(k.asset_key.to_user_string(), k.partition_key) for k in busy} == {
            ("crawl_docs", "b"),
            ("crawl_docs", "c"),
        }
