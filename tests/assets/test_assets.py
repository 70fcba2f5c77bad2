"""The assets through Dagster's own execution: crawl_docs, quality_classifier, seeds, the check, the sensor."""

from __future__ import annotations

import random
import shutil

import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, build_sensor_context, materialize

from dataset_assets.defs.crawl import crawl_docs, crawl_landing_sensor
from dataset_assets.defs.dedup import dedup_buckets, dedup_clusters, dedup_signatures
from dataset_assets.defs.quality import quality_classifier
from dataset_assets.defs.seeds import seeds
from dataset_assets.orchestration.graph import crawl_shards, dedup_bands
from resources.lake import Lake
from resources.landing import CrawlLanding
from tests.conftest import CRAWL, QUALITY, distinct_english, english, write_jsonl_gz

ASSETS = [crawl_docs, dedup_signatures, dedup_buckets, dedup_clusters, quality_classifier, seeds]


def run(env, selection, partition_key=None, run_config=None, raise_on_error=True):
    return materialize(
        ASSETS,
        selection=selection,
        partition_key=partition_key,
        resources=env["resources"],
        instance=env["instance"],
        run_config=run_config or {},
        raise_on_error=raise_on_error,
    )


def metadata(result, asset_key):
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    mats = [m for m in mats if m.asset_key == asset_key]
    return {k: v.value for k, v in mats[-1].metadata.items()}


SPAM = "spam.jsonl.gz"  # sorts after the other shards: the backfill range below ends with it
_SPAM_WORDS = (
    "buy cheap best price online sale discount free shipping order now click here deal offer coupon code "
    "watches shoes bags replica outlet store shop cart checkout login sign up subscribe newsletter casino bonus "
    "win loans fast credit insurance quote seo traffic followers likes download crack keygen"
).split()


def spam_pages(n: int) -> list[dict]:
    """Keyword-stuffed shop and link-farm pages, each a different shuffle (no near duplicates of each
    other): English words, long enough for crawl_docs, and nothing a person would keep."""
    rng = random.Random(7)
    pages = []
    for i in range(n):
        words = [rng.choice(_SPAM_WORDS) for _ in range(60 + 3 * i)]
        lines = [" ".join(words[j : j + 12]).capitalize() + "!" for j in range(0, len(words), 12)]
        pages.append(
            {
                "id": f"spam{i}",
                "text": "Home | Shop | Cart | Login\n" + "\n".join(lines),
                "url": f"http://spam.example/{i}",
            }
        )
    return pages


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    landing = root / "landing"
    landing.mkdir()
    for name in ("c4-en-sample-1000.jsonl.gz", "cc-main-2019-30-docs.jsonl.gz"):
        shutil.copy(CRAWL / name, landing / name)
    # Two shards that share five documents (distinct texts: no near duplicates among the others).
    shared = [{"id": f"s{i}", "text": distinct_english(i), "url": f"http://a/{i}"} for i in range(20)]
    write_jsonl_gz(landing / "overlap-a.jsonl.gz", shared)
    write_jsonl_gz(
        landing / "overlap-b.jsonl.gz", shared[:5] + [{"id": "new", "text": distinct_english(77), "url": "http://b"}]
    )
    write_jsonl_gz(landing / SPAM, spam_pages(24))
    (landing / "README.txt").write_text("not a shard")
    instance = DagsterInstance.ephemeral()
    resources = {"lake": Lake(root=str(root / "lake")), "landing": CrawlLanding(location=str(landing))}
    instance.add_dynamic_partitions(crawl_shards.name, sorted(resources["landing"].files()))
    e = {"root": root, "landing": landing, "instance": instance, "resources": resources, "lake": resources["lake"]}
    e["crawl"] = {}
    for key in (
        "c4-en-sample-1000.jsonl.gz",
        "cc-main-2019-30-docs.jsonl.gz",
        "overlap-a.jsonl.gz",
        "overlap-b.jsonl.gz",
        SPAM,
    ):
        e["crawl"][key] = metadata(run(e, [crawl_docs], key), crawl_docs.key)
    e["classifier"] = metadata(
        run(
            e, [quality_classifier], run_config={"ops": {"quality_classifier": {"config": {"reference": str(QUALITY)}}}}
        ),
        quality_classifier.key,
    )
    return e


def test_crawl_docs_rows_follow_the_document_contract(env):
    table = env["lake"].read_partition("crawl_docs", {"shard": "c4-en-sample-1000.jsonl.gz"})
    for column in ("id", "text", "url", "shard", "crawl", "lang", "lang_score", "content_hash"):
        assert column in table.column_names
    assert table.num_rows == env["crawl"]["c4-en-sample-1000.jsonl.gz"]["rows"] > 900
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    meta = env["crawl"]["c4-en-sample-1000.jsonl.gz"]
    assert meta["drop_counts"]["too_short"] > 0 and meta["languages"]["en"] > 900 and meta["truncated"] is False


def test_shared_documents_are_folded_into_one_representative_by_the_dedup_stages(env):
    """crawl_docs keeps both copies; the dedup stages keep one of each pair (the smaller id: these
    rows have no crawl date) and seeds drop the other as `duplicate`, naming what it was folded into."""
    assert (
        env["crawl"]["overlap-b.jsonl.gz"]["rows"] == 6
        and "duplicate" not in env["crawl"]["overlap-b.jsonl.gz"]["drop_counts"]
    )
    overlap = ["overlap-a.jsonl.gz", "overlap-b.jsonl.gz"]
    for shard in overlap:
        run(env, [dedup_signatures], shard)
    for band in dedup_bands.get_partition_keys():
        run(env, [dedup_buckets], band)
    clusters = metadata(run(env, [dedup_clusters]), dedup_clusters.key)
    assert clusters["removed_exact"] == 5 and clusters["removed_near"] == 0 and clusters["clusters"] == 5
    assert (
        clusters["removed_per_shard"]["overlap-a.jsonl.gz"]["duplicate"]
        + clusters["removed_per_shard"]["overlap-b.jsonl.gz"]["duplicate"]
        == 5
    )
    for shard in overlap:
        run(env, [seeds], shard)
    rows = [r for shard in overlap for r in env["lake"].read_partition("seeds", {"shard": shard}).to_pylist()]
    by_key: dict = {}
    for r in rows:
        by_key.setdefault(r["record_key"], []).append(r)
    for i in range(5):
        pair = by_key[f"s{i}"]
        keeper, dropped = sorted(pair, key=lambda r: r["id"])
        assert keeper["drop_reason"] != "duplicate" and keeper["duplicate_of"] is None
        assert dropped["drop_reason"] == "duplicate" and dropped["duplicate_of"] == keeper["id"] and not dropped["kept"]
    assert all(
        r["duplicate_of"] is None for k, rs in by_key.items() if k not in {f"s{i}" for i in range(5)} for r in rs
    )


def test_a_shard_of_one_repeated_page_keeps_one_and_is_not_called_low_quality(env):
    """Every document the same: one representative, the rest `duplicate` (never clustered on
    nothing), and the kept-share WARN judges the shard by its one own document, not by its copies."""
    name = "same.jsonl.gz"
    write_jsonl_gz(
        env["landing"] / name,
        [{"id": f"r{i}", "text": distinct_english(90), "url": f"http://same/{i}"} for i in range(15)],
    )
    env["instance"].add_dynamic_partitions(crawl_shards.name, [name])
    run(env, [crawl_docs], name)
    run(env, [dedup_signatures], name)
    for band in dedup_bands.get_partition_keys():
        run(env, [dedup_buckets], band)
    run(env, [dedup_clusters])
    result = run(env, [seeds], name)
    meta = metadata(result, seeds.key)
    assert meta["removed_exact"] == 14 and meta["deduplicated"] and meta["drop_counts"]["duplicate"] == 14
    warn = {c.check_name: c for c in result.get_asset_check_evaluations()}["seeds_kept_share"]
    assert warn.passed and warn.metadata["documents"].value == 1


def test_a_non_shard_file_fails_only_its_own_partition(env):
    result = run(env, [crawl_docs], "README.txt", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.event_specific_data.error.message) + str(failure.event_specific_data.error.cause)
    assert "README.txt" in message and "Accepted formats" in message and ".warc.gz" in message
    assert not env["lake"].has_partition("crawl_docs", {"shard": "README.txt"})
    assert env["lake"].has_partition("crawl_docs", {"shard": "c4-en-sample-1000.jsonl.gz"})


def test_classifier_is_trained_evaluated_and_stored(env):
    meta = env["classifier"]
    assert meta["source"] == "trained" and meta["roc_auc"] > 0.85 and 0 < meta["precision"] <= 1
    assert meta["score_quantiles"]["p10"] <= meta["score_quantiles"]["p50"] <= meta["score_quantiles"]["p90"]
    assert env["lake"].exists(["quality_classifier", "model.bin"])
    calibration = env["lake"].get_json(["quality_classifier", "calibration.json"])
    assert len(calibration["quantiles"]) == 101
    # The second signal: the reference LM, stored beside the model, with its own and the combined quantiles.
    signals = calibration["signals"]
    assert signals["rule"] == "mean" and env["lake"].exists(["quality_classifier", "reference_lm.npz"])
    assert len(signals["reference_lm"]["quantiles"]) == 101 and len(signals["combined"]["quantiles"]) == 101
    assert meta["reference_lm_vocabulary"] > 1000 and meta["signals"]["combine"] == "mean"
    # The third signal, length: no file of its own, its quantiles in words.
    assert signals["order"] == ["reference_lm", "length"] and len(signals["length"]["quantiles"]) == 101
    assert 0 <= meta["length_quantiles"]["p10"] < meta["length_quantiles"]["p90"] <= 2000


def test_the_classifier_and_length_alone_need_no_reference_lm(env, tmp_path):
    """`reference_lm: false` (the faster configuration): the calibration orders length alone, the
    previous LM file goes (nothing would read it), and seeds score without it, lm_score null."""
    root = tmp_path / "lake"
    shutil.copytree(env["lake"].root, root)
    lake = Lake(root=str(root))
    assert lake.exists(["quality_classifier", "reference_lm.npz"])
    resources = {**env["resources"], "lake": lake}
    config = {"ops": {"quality_classifier": {"config": {"reference": str(QUALITY), "reference_lm": False}}}}
    materialize(
        ASSETS, selection=[quality_classifier], resources=resources, instance=env["instance"], run_config=config
    )
    signals = lake.get_json(["quality_classifier", "calibration.json"])["signals"]
    assert signals["order"] == ["length"] and "reference_lm" not in signals
    assert not lake.exists(["quality_classifier", "reference_lm.npz"])
    key = "c4-en-sample-1000.jsonl.gz"
    result = materialize(ASSETS, selection=[seeds], partition_key=key, resources=resources, instance=env["instance"])
    rows = lake.read_partition("seeds", {"shard": key}).to_pylist()
    assert len(rows) == env["crawl"][key]["rows"] and all(
        r["lm_score"] is None and r["length_score"] is not None for r in rows
    )
    assert metadata(result, seeds.key)["quality_signals"] == "classifier + length (mean of percentiles)"


def test_seeds_score_every_document_and_pass_the_blocking_check(env):
    key = "c4-en-sample-1000.jsonl.gz"
    result = run(env, [seeds], key)
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and check.check_name == "seeds_valid"
    table = env["lake"].read_partition("seeds", {"shard": key})
    rows = table.to_pylist()
    assert len(rows) == env["crawl"][key]["rows"]
    kept = [r for r in rows if r["kept"]]
    assert kept and all(r["drop_reason"] is None for r in kept)
    assert all(not r["kept"] and r["drop_reason"] for r in rows if not r["kept"])
    assert 0.05 < len([r for r in kept]) / len(rows) < 0.2  # about the top 10% after Gopher rules
    assert all(0 <= r["quality_score"] <= 1 for r in rows)
    # Each signal's own score stays in the row; the percentile the keep rule used is the combined one.
    assert all(r["lm_score"] is not None and -20 <= r["lm_score"] < 0 for r in rows)
    assert all(r["length_score"] == min(len(r["text"][:16000].split()), 2000) for r in rows)
    assert min(r["quality_percentile"] for r in kept) >= 90.0
    reasons = {r["drop_reason"] for r in rows} - {None}
    assert "low_quality" in reasons
    # The Gopher rules judge what the quality rule keeps: a top-placed page is kept unless they (or
    # dedup) drop it, and nothing kept fails them. (With the length signal few top pages fail them.)
    from dataset_assets.quality.heuristics import GopherRules, gopher_reason

    top = [r for r in rows if r["quality_percentile"] >= 90.0]
    assert all(
        r["kept"] or r["drop_reason"].startswith("gopher_") or r["drop_reason"] in ("duplicate", "near_duplicate")
        for r in top
    )
    assert all(gopher_reason(r["text"], GopherRules()) is None for r in kept)
    # The footer names the kept set, so the backfill can tell when rephrasings of it are outdated.
    from dataset_assets.quality.seeds import kept_fingerprint
    from dataset_assets.rephrase.store import seeds_fingerprint

    assert seeds_fingerprint(env["lake"], key) == kept_fingerprint(kept)


def test_a_shard_that_keeps_nothing_warns_and_never_fails_the_run(env):
    # The default keep rule (the lake's top 10% by the combined score) on a shard of spam pages.
    result = run(env, [seeds], SPAM, raise_on_error=False)
    assert result.success  # a shard of low-quality pages is a correct outcome, not a broken one
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["seeds_valid"].passed and checks["seeds_valid"].metadata["rows_lost"].value == 0
    warn = checks["seeds_kept_share"]
    assert not warn.passed and warn.severity == AssetCheckSeverity.WARN and warn.metadata["kept"].value == 0
    assert warn.metadata["documents"].value > 10


def test_a_backfill_run_of_many_shards_scores_each_and_names_the_low_quality_one(env):
    """What the multi-run backfill policy launches for seeds: one run over a range of shards. Each
    shard is committed and recorded under its own key; each check is reported once for the run,
    summing the counts, and the kept-share WARN names the shard that kept too little."""
    from dagster import AssetKey

    from dataset_assets.orchestration.shard_runs import shard_backfill_policy
    from dataset_assets.status import catalog

    assert seeds.backfill_policy == shard_backfill_policy()
    shards = ["cc-main-2019-30-docs.jsonl.gz", "overlap-a.jsonl.gz", "overlap-b.jsonl.gz", SPAM]
    before = {r["partition"]: r["committed_ns"] for r in catalog.read(env["lake"]).to_pylist() if r["asset"] == "seeds"}
    result = materialize(
        ASSETS,
        selection=[seeds],
        resources=env["resources"],
        instance=env["instance"],
        tags={"dagster/asset_partition_range_start": shards[0], "dagster/asset_partition_range_end": shards[-1]},
        raise_on_error=False,
    )
    assert result.success
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert sorted(m.partition for m in mats if m.asset_key == AssetKey("seeds")) == shards
    documents = sum(env["crawl"][s]["rows"] for s in shards)
    meta = {k: v.value for k, v in mats[0].metadata.items()}
    assert meta["shards"] == 4 and meta["rows"] == documents and sorted(meta["per_shard"]) == shards
    assert (
        meta["kept"] == sum(m["kept"] for m in meta["per_shard"].values())
        and meta["kept_share"] == meta["kept"] / documents
    )
    assert min(m["mean_quality_score"] for m in meta["per_shard"].values()) <= meta["mean_quality_score"] <= 1
    for shard in shards:
        assert env["lake"].read_partition("seeds", {"shard": shard}).num_rows == env["crawl"][shard]["rows"]
    after = {r["partition"]: r["committed_ns"] for r in catalog.read(env["lake"]).to_pylist() if r["asset"] == "seeds"}
    assert all(after[s] > before.get(s, 0) for s in shards)

    checks = result.get_asset_check_evaluations()
    assert sorted(c.check_name for c in checks) == ["seeds_kept_share", "seeds_valid"]
    by_name = {c.check_name: c for c in checks}
    valid = by_name["seeds_valid"]
    assert valid.passed and valid.metadata["shards"].value == 4 and valid.metadata["documents"].value == documents
    assert valid.metadata["rows_lost"].value == 0 and valid.metadata["failing"].value == {}
    warn = by_name["seeds_kept_share"]
    assert not warn.passed and warn.severity == AssetCheckSeverity.WARN
    failing = warn.metadata["failing"].value
    assert SPAM in failing and failing[SPAM]["kept"] == 0 and failing[SPAM]["documents"] == env["crawl"][SPAM]["rows"]
    assert warn.metadata["failing_shards"].value == len(failing) and SPAM in warn.description


def test_supplied_model_is_loaded_instead_of_trained(env, tmp_path):
    supplied = tmp_path / "dclm-like.bin"
    env["lake"].download(["quality_classifier", "model.bin"], str(supplied))
    result = run(
        env,
        [quality_classifier],
        run_config={
            "ops": {"quality_classifier": {"config": {"model_path": str(supplied), "reference": str(QUALITY)}}}
        },
    )
    meta = metadata(result, quality_classifier.key)
    assert meta["source"] == f"supplied: {supplied}" and meta["train_examples"] == 0 and meta["roc_auc"] > 0.85


def test_supplied_model_without_the_hq_label_is_refused(env, tmp_path):
    supplied = tmp_path / "m.bin"
    env["lake"].download(["quality_classifier", "model.bin"], str(supplied))
    result = run(
        env,
        [quality_classifier],
        run_config={
            "ops": {"quality_classifier": {"config": {"model_path": str(supplied), "hq_label": "__label__good"}}}
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "__label__good" in failure.event_specific_data.error.message


def test_truncated_shard_is_marked_in_metadata_and_keeps_earlier_documents(env):
    data = (CRAWL / "c4-en-sample-1000.jsonl.gz").read_bytes()
    (env["landing"] / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    env["instance"].add_dynamic_partitions(crawl_shards.name, ["cut.jsonl.gz"])
    meta = metadata(
        run(env, [crawl_docs], "cut.jsonl.gz"),
        crawl_docs.key,
    )
    assert meta["truncated"] is True and "cut short" in meta["read_error"] and 300 < meta["rows"] < 1000


def test_sensor_adds_new_shards_and_requests_their_runs(tmp_path):
    landing = tmp_path / "landing"
    (landing / "sub").mkdir(parents=True)
    write_jsonl_gz(landing / "one.jsonl.gz", [{"text": english(1)}])
    write_jsonl_gz(landing / "sub" / "two two.jsonl.gz", [{"text": english(2)}])
    (landing / "three.warc.gz.tmp").write_bytes(b"still uploading")
    instance = DagsterInstance.ephemeral()
    resource = CrawlLanding(location=str(landing))
    result = crawl_landing_sensor(
        build_sensor_context(
            instance=instance, resources={"landing": resource, "lake": Lake(root=str(tmp_path / "lake"))}
        )
    )
    assert [r.partition_key for r in result.run_requests] == ["one.jsonl.gz", "sub__two_two.jsonl.gz"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["one.jsonl.gz", "sub__two_two.jsonl.gz"]
    instance.add_dynamic_partitions(crawl_shards.name, ["one.jsonl.gz", "sub__two_two.jsonl.gz"])
    again = crawl_landing_sensor(
        build_sensor_context(
            instance=instance, resources={"landing": resource, "lake": Lake(root=str(tmp_path / "lake"))}
        )
    )
    assert not getattr(again, "run_requests", None)  # nothing new: a SkipReason


def test_a_large_landing_is_registered_in_bounded_batches_per_tick(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    landing.mkdir()
    for i in range(7):
        (landing / f"part-{i:02d}.jsonl.gz").write_bytes(b"")
    monkeypatch.setenv("LANDING_SENSOR_BATCH", "3")
    instance = DagsterInstance.ephemeral()
    resource = CrawlLanding(location=str(landing))
    registered = []
    for expected in (3, 3, 1):
        context = build_sensor_context(
            instance=instance, resources={"landing": resource, "lake": Lake(root=str(tmp_path / "lake"))}
        )
        result = crawl_landing_sensor(context)
        keys = result.dynamic_partitions_requests[0].partition_keys
        assert len(keys) == expected and len(result.run_requests) == expected
        instance.add_dynamic_partitions(crawl_shards.name, keys)
        registered += keys
    assert registered == [f"part-{i:02d}.jsonl.gz" for i in range(7)]
    (landing / "late.jsonl.gz").write_bytes(b"")
    monkeypatch.setenv("LANDING_SENSOR_BATCH", "none")
    with pytest.raises(ValueError, match="LANDING_SENSOR_BATCH"):
        crawl_landing_sensor(
            build_sensor_context(
                instance=instance, resources={"landing": resource, "lake": Lake(root=str(tmp_path / "lake"))}
            )
        )


def test_a_reconcile_tick_lists_a_local_landing_once(tmp_path, monkeypatch):
    """A file uploaded out of name order (before the cursor) is found by the periodic whole listing,
    and a local folder is listed once in that tick, not once for the cursor and again for the reconcile."""
    from dataset_assets.defs.crawl import new_landing_keys

    for name in ("a.jsonl.gz", "b.jsonl.gz", "c.jsonl.gz"):
        (tmp_path / name).write_bytes(b"")
    landing = CrawlLanding(location=str(tmp_path))
    calls = []
    real = CrawlLanding.files
    monkeypatch.setattr(CrawlLanding, "files", lambda self: calls.append(1) or real(self))
    cursor = {"after": "c.jsonl.gz", "reconciled_at": 0.0}
    found, how = new_landing_keys(landing, {"a.jsonl.gz", "c.jsonl.gz"}, cursor, 10, now=10_000.0)
    assert (found, how, len(calls)) == (["b.jsonl.gz"], "by listing the whole landing", 1)
    assert cursor == {"after": "c.jsonl.gz", "reconciled_at": 10_000.0}
    # Before the next reconcile is due, only files after the cursor count.
    (tmp_path / "0-early.jsonl.gz").write_bytes(b"")
    assert new_landing_keys(landing, {"a.jsonl.gz", "c.jsonl.gz"}, cursor, 10, now=10_001.0) == ([], "after the cursor")


def test_parquet_written_by_crawl_docs_is_zstd(env):
    path = env["lake"].partition_files("crawl_docs", {"shard": "c4-en-sample-1000.jsonl.gz"})[0]
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression.lower() == "zstd"


def test_a_backfill_run_of_many_shards_commits_each_and_names_the_bad_file(tmp_path):
    """A range run (what the multi-run backfill policy launches) reads its shards one after another:
    each is committed and recorded as a one-shard run would, the metadata lists them, and a file that
    is not a shard fails the run by name without losing the shards after it."""
    from dagster import AssetKey

    from dataset_assets.orchestration.shard_runs import shard_backfill_policy
    from dataset_assets.status import catalog

    assert (
        shard_backfill_policy().max_partitions_per_run == 100 and crawl_docs.backfill_policy == shard_backfill_policy()
    )
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("a.jsonl.gz", "c.jsonl.gz"):
        write_jsonl_gz(
            landing / name,
            [
                {"id": f"{name}{i}", "text": distinct_english(i + len(name)), "url": f"http://{name}/{i}"}
                for i in range(4)
            ],
        )
    (landing / "b-notes.txt").write_text("not a shard")
    instance = DagsterInstance.ephemeral()
    lake = Lake(root=str(tmp_path / "lake"))
    resources = {"lake": lake, "landing": CrawlLanding(location=str(landing))}
    keys = sorted(resources["landing"].files())
    instance.add_dynamic_partitions(crawl_shards.name, keys)

    def range_run(first, last):
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        return materialize(
            [crawl_docs, dedup_signatures], resources=resources, instance=instance, tags=tags, raise_on_error=False
        )

    good = range_run("a.jsonl.gz", "a.jsonl.gz")
    assert good.success
    bad = range_run("a.jsonl.gz", "c.jsonl.gz")
    assert not bad.success
    failure = next(e for e in bad.all_events if e.is_step_failure)
    assert "b-notes.txt" in str(failure.event_specific_data.error.message) + str(
        failure.event_specific_data.error.cause
    )
    assert "1 of 3 shards failed" in str(failure.event_specific_data.error.message) + str(
        failure.event_specific_data.error.cause
    )
    # The shards before and after the bad file are committed and recorded, each under its own key.
    assert lake.partition_values("crawl_docs", "shard") == ["a.jsonl.gz", "c.jsonl.gz"]
    recorded = catalog.read(lake).to_pylist()
    assert sorted(r["partition"] for r in recorded if r["asset"] == "crawl_docs") == ["a.jsonl.gz", "c.jsonl.gz"]
    assert all(lake.read_partition("crawl_docs", {"shard": s}).num_rows == 4 for s in ("a.jsonl.gz", "c.jsonl.gz"))
    (landing / "b-notes.txt").unlink()
    instance.delete_dynamic_partition(crawl_shards.name, "b-notes.txt")
    both = range_run("a.jsonl.gz", "c.jsonl.gz")
    assert both.success
    mats = [e.event_specific_data.materialization for e in both.get_asset_materialization_events()]
    docs = [m for m in mats if m.asset_key == AssetKey("crawl_docs")]
    assert sorted(m.partition for m in docs) == ["a.jsonl.gz", "c.jsonl.gz"]
    meta = docs[0].metadata
    assert (
        meta["shards"].value == 2
        and meta["rows"].value == 8
        and sorted(meta["per_shard"].value) == ["a.jsonl.gz", "c.jsonl.gz"]
    )
    assert lake.partition_values("dedup_signatures", "shard") == ["a.jsonl.gz", "c.jsonl.gz"]
