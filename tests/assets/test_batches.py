"""Batch partitions (CRAWL_BATCH_FILES > 1): the registry, the landing sensor's grouping, status
rolled up from files to batches, and the sensors and the nightly backfill working on batch keys.
The end-to-end run of every stage over batches is in test_cli.py."""

from __future__ import annotations

import time

from dagster import AssetKey, DagsterInstance, build_sensor_context

from dataset_assets import settings
from dataset_assets.orchestration.graph import crawl_shards
from dataset_assets.rephrase.strategies import load_strategies, prompt_hash
from dataset_assets.status import batches, catalog
from dataset_assets.status.judge import graph_status, landing_view, rephrased_status
from resources.lake import Lake
from resources.landing import CrawlLanding


def test_the_registry_groups_files_keeps_single_files_as_their_own_key_and_reads_back(tmp_path, monkeypatch):
    lake = Lake(root=str(tmp_path / "lake"))
    assert batches.group(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches.register(lake, batches.group(["a", "b", "c", "d", "e"], 2)) == ["a+1", "c+1", "e"]
    registry = batches.read(lake)
    assert registry.members == {"a+1": ["a", "b"], "c+1": ["c", "d"]}  # a batch of one needs no entry
    assert (
        registry.files("a+1") == ["a", "b"]
        and registry.files("e") == ["e"]
        and registry.files("unknown") == ["unknown"]
    )
    assert registry.expand("c+1|summary") == ["c|summary", "d|summary"] and registry.expand("e|summary") == [
        "e|summary"
    ]
    assert registry.batch_of(["a+1", "e"]) == {"a": "a+1", "b": "a+1", "e": "e"}
    # A registration retried after a crash writes the batch again: the newest file is read.
    batches.register(lake, [["c", "d"]])
    assert batches.read(lake).members["c+1"] == ["c", "d"]
    # Many registrations are folded into one file, with nothing lost.
    monkeypatch.setattr(batches, "COMPACT_AT", 2)
    batches.register(lake, [["x", "y"]])
    assert len(list((tmp_path / "lake" / "_batches").glob("*.parquet"))) == 1
    assert batches.read(lake).members == {"a+1": ["a", "b"], "c+1": ["c", "d"], "x+1": ["x", "y"]}
    # An empty lake has no registry: every key is one file.
    assert batches.read(Lake(root=str(tmp_path / "empty"))).members == {}


def test_the_landing_sensor_registers_batches_and_never_regroups_them(tmp_path, monkeypatch):
    from dataset_assets.defs.crawl import crawl_landing_sensor

    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        (landing / f"{name}.jsonl.gz").write_bytes(b"")
    monkeypatch.setenv("CRAWL_BATCH_FILES", "2")
    monkeypatch.setenv("LANDING_SENSOR_BATCH", "4")
    instance = DagsterInstance.ephemeral()
    lake = Lake(root=str(tmp_path / "lake"))
    resources = {"landing": CrawlLanding(location=str(landing)), "lake": lake}

    def tick():
        result = crawl_landing_sensor(build_sensor_context(instance=instance, resources=resources))
        keys = result.dynamic_partitions_requests[0].partition_keys if result.dynamic_partitions_requests else []
        assert [r.partition_key for r in result.run_requests] == keys
        instance.add_dynamic_partitions(crawl_shards.name, keys)
        return keys

    assert tick() == ["a.jsonl.gz+1", "c.jsonl.gz+1"]  # four files this tick, two per partition
    assert tick() == ["e.jsonl.gz"]  # the one left: a batch of one
    assert tick() == []
    (landing / "b2.jsonl.gz").write_bytes(b"")  # sorts inside the first batch: found by the reconcile, a new batch
    monkeypatch.setenv("LANDING_RECONCILE_SECONDS", "1")
    time.sleep(1.1)
    assert tick() == ["b2.jsonl.gz"]
    assert batches.read(lake).files("a.jsonl.gz+1") == ["a.jsonl.gz", "b.jsonl.gz"]


def test_with_no_setting_a_small_landing_stays_per_file_and_a_crawl_is_batched(monkeypatch):
    monkeypatch.delenv("CRAWL_BATCH_FILES", raising=False)
    assert settings.crawl_batch_files() is None  # auto
    monkeypatch.setenv("CRAWL_BATCH_FILES", "auto")
    assert settings.crawl_batch_files() is None
    monkeypatch.setenv("CRAWL_BATCH_FILES", "1")
    assert settings.crawl_batch_files() == 1  # an operator's fixed size still wins
    small = [f"f{i:03d}.warc.gz" for i in range(6)]
    assert batches.plan(small, [], None) == [[f] for f in small]  # the demo, every test: a partition per file
    files = [f"CC-MAIN-{i:06d}.warc.gz" for i in range(100_000)]
    once = batches.plan(files, [], None)
    assert len(once) == 500 + 389 and all(len(g) == 1 for g in once[:500]) and len(once[500]) == 256
    # The same landing registered a tick at a time (LANDING_SENSOR_BATCH files each), as the sensor does.
    keys: list[str] = []
    for start in range(0, len(files), 1000):
        keys += [batches.key_of(g) for g in batches.plan(files[start : start + 1000], keys, None)]
    assert batches.files_registered(keys) == 100_000
    assert len(keys) <= 1000, len(keys)  # at most about 1,000 partitions per asset
    # Decided when registered, never reshuffled: more files later only add partitions.
    later = batches.plan(["z.warc.gz"], keys, None)
    assert later == [["z.warc.gz"]] and batches.key_of(later[0]) == "z.warc.gz"
    assert batches.files_registered(["a+1", "b", "c+255"]) == 2 + 1 + 256


def test_status_judges_files_against_the_landing_they_were_registered_from(tmp_path):
    from dataset_assets.status import landings

    lake = Lake(root=str(tmp_path / "lake"))
    assert landings.recorded(lake) == [] and landings.to_judge_against(None, lake) == ([], "none recorded")
    landings.record(lake, "/data/crawl-a")
    landings.record(lake, "/data/crawl-a")  # once per location
    landings.record(lake, "s3://bucket/crawl-b")
    assert sorted(landings.recorded(lake)) == ["/data/crawl-a", "s3://bucket/crawl-b"]
    assert len(list((tmp_path / "lake" / "_landings").iterdir())) == 2
    assert landings.to_judge_against("/elsewhere", lake) == (["/elsewhere"], "given")  # a named landing wins
    looked, why = landings.to_judge_against(None, lake)
    assert (
        sorted(looked) == ["/data/crawl-a", "s3://bucket/crawl-b"] and why == "recorded when the files were registered"
    )


def _records(lake, asset: str, files: list[str], **facts) -> None:
    for f in files:
        catalog.record(lake, asset, f, "v1", **facts)


def test_a_status_pass_reads_the_batch_registry_once(tmp_path, monkeypatch):
    """`dataset-assets status`: the partitions to judge (registered keys, then landed files no
    partition holds), the registered files whose landing file is gone, and the status itself, from
    one read of the registry."""
    lake = Lake(root=str(tmp_path / "lake"))
    keys = batches.register(lake, [["a", "b"], ["c", "d"]])
    _records(lake, "crawl_docs", ["a", "b", "c"])
    reads = []
    real = batches.read
    monkeypatch.setattr(batches, "read", lambda lake: reads.append(1) or real(lake))
    view = landing_view(lake, keys, ["a", "b", "c", "new"])  # d was moved away; "new" is not registered yet
    assert (view.shards, view.unregistered, view.gone) == (["a+1", "c+1", "new"], ["new"], ["d"])
    status = graph_status(lake, view.shards, {}, "gen", [], registry=view.registry)
    assert len(reads) == 1
    assert (status["crawl_docs"].current, status["crawl_docs"].pending) == (
        1,
        {"c+1": ("missing", []), "new": ("missing", [])},
    )


def test_status_judges_files_and_counts_batches(tmp_path):
    """A batch is missing while any of its files is, outdated if any is (with every reason), current
    when all are; the dedup stages still cover files."""
    lake = Lake(root=str(tmp_path / "lake"))
    keys = batches.register(lake, [["a", "b"], ["c", "d"], ["e"]])
    _records(lake, "crawl_docs", ["a", "b", "c", "e"])  # d is not read yet
    _records(lake, "dedup_signatures", ["a", "b", "c", "d", "e"])
    fingerprints = {f: f"f-{f}" for f in "abcde"}
    catalog.record(lake, "dedup_clusters", "", "v1", fingerprints=fingerprints)
    for f in "abcde":
        catalog.record(
            lake, "seeds", f, "v1", kept_fingerprint=f"k-{f}", dedup_fingerprint="older" if f == "c" else f"f-{f}"
        )
    status = graph_status(lake, keys, {}, "gen", [])
    assert (status["crawl_docs"].current, status["crawl_docs"].pending) == (2, {"c+1": ("missing", [])})
    assert status["dedup_signatures"].current == 3 and not status["dedup_signatures"].pending
    assert (status["seeds"].current, status["seeds"].pending) == (2, {"c+1": ("outdated", ["dedup decisions changed"])})
    assert status["dedup_clusters"].state(None) == "current"  # the clusters cover the five files

    strategies = {k: v for k, v in load_strategies(settings.prompts_dir()).items() if k in ("summary", "table")}

    for f in "abcde":
        for name, strategy in strategies.items():
            if (f, name) == ("b", "table"):
                continue  # one file of a+1 not rephrased with table: a+1|table is missing
            edited = (f, name) == ("d", "summary")
            catalog.record(
                lake,
                "rephrased",
                f"{f}|{name}",
                "v1",
                prompt_hash="old" if edited else prompt_hash(strategy),
                generator="gen",
                seeds_fingerprint=f"k-{f}",
            )
    table = catalog.read(lake)
    seeds = catalog.facts(table, "seeds")
    files = batches.read(lake).files_of(keys)
    by_batch = rephrased_status(
        table, files, strategies, "gen", seeds, [batches.read(lake).batch_of(keys)[f] for f in files]
    )
    assert by_batch.current == 4 and by_batch.pending == {
        "a+1|table": ("missing", []),
        "c+1|summary": ("outdated", ["prompt edited"]),
    }
    by_file = rephrased_status(table, files, strategies, "gen", seeds)
    assert by_file.current == 8 and set(by_file.pending) == {"b|table", "d|summary"}


def test_the_nightly_backfill_and_the_dedup_sensor_ask_for_batch_keys(tmp_path):
    from dataset_assets import definitions
    from dataset_assets.defs.dedup import dedup_seeds_sensor
    from dataset_assets.defs.nightly import needed_partitions

    lake = Lake(root=str(tmp_path / "lake"))
    keys = batches.register(lake, [["a", "b"], ["c", "d"], ["e"]])
    _records(lake, "crawl_docs", ["a", "b", "c", "d"])
    wanted, total = needed_partitions(lake, keys, "gen", limit=None)
    crawl = {k.partition_key for k in wanted if k.asset_key == AssetKey("crawl_docs")}
    assert crawl == {"e"} and {k.partition_key for k in wanted if k.asset_key == AssetKey("seeds")} == set(keys)

    catalog.record(lake, "dedup_clusters", "", "v1", fingerprints={f: f"f-{f}" for f in "abcdez"})
    for f in "abe":
        catalog.record(lake, "seeds", f, "v1", kept_fingerprint="k", dedup_fingerprint=f"f-{f}")
    catalog.record(lake, "seeds", "c", "v1", kept_fingerprint="k", dedup_fingerprint="older")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, keys)
    with build_sensor_context(
        instance=instance, resources={"lake": lake}, repository_def=definitions.defs.get_repository_def()
    ) as context:
        result = dedup_seeds_sensor(context)
    # c (outdated) and d (missing) are one partition; z is no partition's file; a, b and e are current.
    assert [r.partition_key for r in result.run_requests] == ["c+1"]
    assert result.run_requests[0].run_key == "dedup:c+1:f-c+f-d"  # the run key follows every file's dedup decisions
