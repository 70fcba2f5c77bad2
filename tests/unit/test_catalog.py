"""The status catalog: records, compaction, concurrent writers, and status that tells the truth after
a crash, a hand deletion, a damaged file and a lake written before the catalog existed."""

from __future__ import annotations

import os
import threading

import pyarrow as pa
import pytest

from dataset_assets.rephrase.generate import rephrase_partition
from dataset_assets.rephrase.store import partition_status
from dataset_assets.rephrase.strategies import load_strategies
from dataset_assets.status import catalog
from dataset_assets.status.judge import graph_status
from dataset_assets.status.lake_walk import facts_rephrased
from resources.lake import Lake
from tests.support.engines import ScriptedEngine
from tests.unit.test_rephrase import PROMPTS, seeds

SHARDS = ["s1", "s2"]


def write_shard(lake: Lake, asset: str, shard: str, record: bool = True, **facts) -> None:
    table = pa.table({"id": [f"{shard}-0"], "text": ["x"]})
    written = lake.write_partition(asset, {"shard": shard}, table.to_batches(), table.schema)
    if record:
        catalog.record(lake, asset, shard, written.data_version, **facts)


def rephrased_lake(tmp_path):
    lake, engine = Lake(root=str(tmp_path / "lake")), ScriptedEngine()
    strategies = load_strategies(PROMPTS)
    chosen = {k: strategies[k] for k in ("qa", "summary")}
    for shard in SHARDS:
        write_shard(lake, "crawl_docs", shard)
        for strategy in chosen.values():
            stats = rephrase_partition(lake, engine, strategy, shard, seeds(2), chunk_docs=4)
            catalog.record(
                lake, "rephrased", f"{shard}|{strategy.name}", **facts_rephrased(stats.manifest)
            )  # as the asset does
    return lake, engine, chosen


def rephrased_states(lake, chosen, generator) -> dict[str, str]:
    rephrased = graph_status(lake, SHARDS, chosen, generator, [])["rephrased"]
    return {f"{s}|{n}": rephrased.state(f"{s}|{n}") for s in SHARDS for n in chosen}


def test_the_latest_record_of_a_partition_wins_and_facts_read_back(tmp_path):
    lake = Lake(root=str(tmp_path))
    write_shard(lake, "seeds", "s1", kept_fingerprint="a", dedup_fingerprint="x")
    catalog.record(lake, "seeds", "s1", "v2", kept_fingerprint="b", dedup_fingerprint="x")
    catalog.record(lake, "seeds", "s2", "v1", kept_fingerprint="c", dedup_fingerprint="y")
    seeds_facts = catalog.facts(catalog.read(lake), "seeds")
    assert seeds_facts["s1"] == {"kept_fingerprint": "b", "dedup_fingerprint": "x", "data_version": "v2"}
    assert set(seeds_facts) == {"s1", "s2"}


def test_compaction_keeps_the_latest_records_in_one_file(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "COMPACT_AT", 5)
    lake = Lake(root=str(tmp_path))
    write_shard(lake, "crawl_docs", "s0")
    for i in range(12):
        catalog.record(lake, "crawl_docs", f"s{i % 4}", f"v{i}")
    table = catalog.read(lake)
    assert sorted(zip(table.column("partition").to_pylist(), table.column("data_version").to_pylist())) == [
        ("s0", "v8"),
        ("s1", "v9"),
        ("s2", "v10"),
        ("s3", "v11"),
    ]
    assert len(catalog._files(lake, catalog.RECORDS)) <= 5 and len(catalog._files(lake, catalog.COMPACTED)) >= 1


def test_two_writers_committing_at_once_lose_no_record(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "COMPACT_AT", 16)  # compactions run while the other writer appends
    lake = Lake(root=str(tmp_path))
    write_shard(lake, "crawl_docs", "first")
    errors = []

    def writer(prefix: str) -> None:
        try:
            for i in range(60):
                catalog.record(lake, "crawl_docs", f"{prefix}{i:03d}", "v")
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(catalog.facts(catalog.read(lake), "crawl_docs")) == 121


def test_a_crash_between_the_data_and_its_record_reads_as_missing_until_rebuilt(tmp_path):
    lake, engine, chosen = rephrased_lake(tmp_path)
    assert set(rephrased_states(lake, chosen, engine.generator).values()) == {"current"}
    # crawl_docs of a third shard committed, then the process died before its record.
    write_shard(lake, "crawl_docs", "s3", record=False)
    status = graph_status(lake, [*SHARDS, "s3"], chosen, engine.generator, [])
    assert status["crawl_docs"].state("s3") == "missing" and status["crawl_docs"].current == 2
    assert catalog.rebuild(lake) >= 7
    status = graph_status(lake, [*SHARDS, "s3"], chosen, engine.generator, [])
    assert status["crawl_docs"].state("s3") == "current" and status["crawl_docs"].current == 3


def test_a_partition_deleted_by_hand_is_found_by_verify_and_missing_after_rebuild(tmp_path):
    lake, engine, chosen = rephrased_lake(tmp_path)
    lake.fs.delete_dir(lake.path("rephrased", "shard=s2", "strategy=qa"))
    assert catalog.verify(lake) == [("rephrased", "s2|qa")]
    catalog.rebuild(lake)
    assert catalog.verify(lake) == []
    assert rephrased_states(lake, chosen, engine.generator)["s2|qa"] == "missing"


def test_a_damaged_catalog_file_is_named_and_rebuild_restores_the_same_status(tmp_path):
    lake, engine, chosen = rephrased_lake(tmp_path)
    before = rephrased_states(lake, chosen, engine.generator)
    victim = catalog._files(lake, catalog.RECORDS)[0]
    with lake.fs.open_output_stream(victim) as out:
        out.write(b"not parquet")
    with pytest.raises(catalog.CatalogDamaged, match=r"cannot be read .*dataset-assets catalog --rebuild"):
        catalog.read(lake)
    catalog.rebuild(lake)
    assert rephrased_states(lake, chosen, engine.generator) == before


def test_a_lake_from_before_the_catalog_asks_for_a_rebuild_then_agrees_with_the_walk(tmp_path):
    lake, engine, chosen = rephrased_lake(tmp_path)
    grown = catalog.read(lake)
    lake.fs.delete_dir(lake.path(catalog.CATALOG))
    with pytest.raises(catalog.CatalogMissing, match="catalog --rebuild"):
        graph_status(lake, SHARDS, chosen, engine.generator, [])
    catalog.rebuild(lake)
    rebuilt = catalog.read(lake)
    # The rebuilt catalog records the same partitions with the same facts the commits recorded.
    for asset in ("crawl_docs", "rephrased"):
        assert {
            k: {f: v for f, v in facts.items() if f != "data_version"}
            for k, facts in catalog.facts(rebuilt, asset).items()
        } == {
            k: {f: v for f, v in facts.items() if f != "data_version"}
            for k, facts in catalog.facts(grown, asset).items()
        }
    # And status from the catalog says what the walk over the lake says.
    walked = partition_status(lake, chosen, SHARDS, engine.generator)
    assert rephrased_states(lake, chosen, engine.generator) == {f"{s}|{n}": state for (s, n), state in walked.items()}


def test_an_empty_lake_reads_as_an_empty_catalog(tmp_path):
    lake = Lake(root=str(tmp_path / "fresh"))
    assert catalog.read(lake).num_rows == 0
    write_shard(lake, "crawl_docs", "s1")
    assert catalog.started(lake) and list(catalog.facts(catalog.read(lake), "crawl_docs")) == ["s1"]


def test_rephrased_records_hold_what_the_manifest_says(tmp_path):
    lake, engine, chosen = rephrased_lake(tmp_path)
    manifest = lake.get_json(["rephrased", "shard=s1", "strategy=qa", "_manifest.json"])
    facts = catalog.facts(catalog.read(lake), "rephrased")["s1|qa"]
    assert {k: facts[k] for k in ("prompt_hash", "generator", "seeds_fingerprint")} == facts_rephrased(manifest)


def test_a_reader_racing_a_compaction_lists_again_instead_of_losing_records(tmp_path, monkeypatch):
    lake = Lake(root=str(tmp_path))
    write_shard(lake, "crawl_docs", "s1")
    catalog.record(lake, "crawl_docs", "s2", "v")
    stale = catalog._files(lake, catalog.RECORDS)
    catalog.compact(lake)  # the files the reader listed are gone; their rows are in the compacted file
    real_files, calls = catalog._files, []

    def first_listing_is_stale(lake_, kind):
        calls.append(kind)
        if kind == catalog.RECORDS and calls.count(kind) == 1:
            return stale
        if kind == catalog.COMPACTED and calls.count(kind) == 1:
            return []
        return real_files(lake_, kind)

    monkeypatch.setattr(catalog, "_files", first_listing_is_stale)
    assert sorted(catalog.facts(catalog.read(lake), "crawl_docs")) == ["s1", "s2"]
    assert calls.count(catalog.RECORDS) == 2


def test_a_catalog_starts_with_the_first_recorded_commit_even_after_the_classifier(tmp_path):
    lake = Lake(root=str(tmp_path / "fresh"))
    lake.put_json(["quality_classifier", "calibration.json"], {"kind": "fasttext"})  # keeps no records
    assert catalog.read(lake).num_rows == 0
    write_shard(lake, "crawl_docs", "s1")
    assert catalog.started(lake)


def test_status_on_a_damaged_catalog_says_what_to_run_instead_of_a_traceback(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    lake, _, _ = rephrased_lake(tmp_path)
    victim = catalog._files(lake, catalog.RECORDS)[0]
    with lake.fs.open_output_stream(victim) as out:
        out.write(b"not parquet")
    (tmp_path / "landing").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataset_assets.cli",
            "status",
            "--lake",
            str(tmp_path / "lake"),
            "--landing",
            str(tmp_path / "landing"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "status failed: status catalog file" in done.stderr and "dataset-assets catalog --rebuild" in done.stderr
    assert "Traceback" not in done.stderr
