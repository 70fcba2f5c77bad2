"""The graph with its lake on S3 and shards landing under an S3 prefix, against a local moto_server.

Every object is checked through boto3, independently of the pyarrow filesystem the code writes
with. The fault drills cut the endpoint in the middle of a run and look at what is left.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    EnvVar,
    MultiPartitionsDefinition,
    build_sensor_context,
    materialize,
)

from dataset_assets import settings
from dataset_assets.defs.crawl import crawl_docs, crawl_landing_sensor
from dataset_assets.defs.quality import quality_classifier
from dataset_assets.defs.rephrase import rephrased
from dataset_assets.defs.seeds import seeds
from dataset_assets.orchestration.graph import crawl_shards
from dataset_assets.quality.seeds import SEED_SCHEMA
from dataset_assets.rephrase.store import MANIFEST, REPHRASED_SCHEMA, finished_partitions
from dataset_assets.rephrase.strategies import load_strategies, routes
from resources.lake import Lake
from resources.landing import CrawlLanding
from tests.conftest import CRAWL, QUALITY, ROOT, english
from tests.support.engines import ScriptedEngine
from tests.support.s3 import LocalS3, MotoServer, free_port, local_s3  # noqa: F401  (local_s3 is a fixture)

ASSETS = [crawl_docs, quality_classifier, seeds, rephrased]
WARC, JSONL = "cc-main-2020-34-excerpt.warc.gz", "cc-main-2019-30-docs.jsonl.gz"
SHARDS = sorted([WARC, JSONL])


def recipe_strategies() -> set[str]:
    """Strategies the mixture recipes read, so a registered `mixtures` asset finds its inputs."""
    try:
        from dataset_assets.mixtures.recipe import load_recipe, recipe_names
    except ImportError:
        return set()
    directory = Path(settings.recipes_dir())
    return {
        c.strategy
        for n in recipe_names(str(directory))
        for c in load_recipe(directory / f"{n}.toml").components
        if c.strategy
    }


STRATEGIES = sorted({"qa", "summary", *recipe_strategies()})
PROMPTS = load_strategies(settings.prompts_dir())
CLASSIFIER_CONFIG = {"ops": {"quality_classifier": {"config": {"reference": str(QUALITY), "epoch": 5}}}}
# Proxy runs on the S3 lake: a small budget (the proxies' own tests train to a real one).
PROXY_CONFIG = {
    "ops": {a: {"config": {"train_tokens": 16384}} for a in ("mixture_tokens", "proxy_models", "proxy_evaluations")}
}


def s3_resources(url: str, bucket: str = "bucket", lake_prefix: str = "lake", landing_prefix: str = "landing") -> dict:
    """The resources as dataset_assets.definitions builds them for S3: credentials only as EnvVar."""
    options = dict(
        s3_endpoint_url=url,
        aws_access_key_id=EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=EnvVar("AWS_SECRET_ACCESS_KEY"),
        aws_region="us-east-1",
    )
    return {
        "lake": Lake(root=f"s3://{bucket}/{lake_prefix}", **options),
        "landing": CrawlLanding(location=f"s3://{bucket}/{landing_prefix}", **options),
        "engine": ScriptedEngine(),
    }


def materialisations(result) -> dict[str, dict]:
    """partition (or asset name) -> metadata values of the run's materialisations."""
    found = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        found[str(m.partition) if m.partition else m.asset_key.to_user_string()] = {
            k: v.value for k, v in m.metadata.items()
        }
    return found


def failure_messages(result) -> list[str]:
    """Each failed step's error with its causes, as the UI shows it (Dagster wraps the exception)."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error, chain = event.event_specific_data.error, []
            while error is not None:
                chain.append(error.message.strip())
                error = error.cause
            messages.append("\n".join(chain))
    return messages


def rephrase(instance, resources, shards, strategies, config=None, raise_on_error=True):
    """One run over the shard range x strategy range, as a single-run backfill launches it."""
    defs = Definitions(assets=ASSETS, resources=resources)
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("rephrased")],
        tags={
            "dagster/asset_partition_range_start": f"{shards[0]}|{strategies[0]}",
            "dagster/asset_partition_range_end": f"{shards[-1]}|{strategies[-1]}",
        },
        run_config={"ops": {"rephrased": {"config": config or {"chunk_docs": 4}}}},
        raise_on_error=raise_on_error,
    )


def parquet_rows(s3, key: str, bucket: str = "bucket") -> list[dict]:
    return pq.read_table(io.BytesIO(s3.get(key, bucket))).to_pylist()


def data_objects(s3, prefix: str, bucket: str = "bucket") -> dict[str, int]:
    """Objects that hold data: not the empty `dir/` markers pyarrow creates."""
    return {k: v for k, v in s3.objects(prefix, bucket).items() if not k.endswith("/")}


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """A persistent instance on disk, so its event log can be searched byte by byte for secrets."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    inst = DagsterInstance.local_temp(str(home))
    yield inst
    inst.dispose()


@pytest.fixture(scope="module")
def graph(local_s3, instance):
    """Shards uploaded under s3://bucket/landing/, then crawl_docs -> quality_classifier -> seeds ->
    rephrased (STRATEGIES, ScriptedEngine) with the lake at s3://bucket/lake/."""
    for name in SHARDS:
        local_s3.upload(CRAWL / name, f"landing/{name}")
    local_s3.client().put_object(Bucket="bucket", Key="landing/incoming.warc.gz.part", Body=b"still uploading")
    resources = s3_resources(local_s3.url)
    keys = sorted(resources["landing"].files())
    assert keys == SHARDS
    instance.add_dynamic_partitions(crawl_shards.name, keys)
    g = {"resources": resources, "lake": resources["lake"], "meta": {}, "results": []}

    def run(selection, partition_key=None, run_config=None):
        result = materialize(
            ASSETS,
            selection=selection,
            partition_key=partition_key,
            resources=resources,
            instance=instance,
            run_config=run_config or {},
        )
        g["results"].append(result)
        g["meta"].update({f"{selection[0].key.to_user_string()}:{k}": v for k, v in materialisations(result).items()})
        return result

    for key in keys:
        run([crawl_docs], key)
    run([quality_classifier], run_config=CLASSIFIER_CONFIG)
    for key in keys:
        run([seeds], key)
    for strategy in STRATEGIES:  # one run per strategy: a run covers a contiguous range of strategies
        result = rephrase(instance, resources, keys, [strategy])
        g["results"].append(result)
        g["meta"].update({f"rephrased:{k}": v for k, v in materialisations(result).items()})
    return g


def test_every_stage_writes_hive_partitions_to_s3(local_s3, graph):
    keys = data_objects(local_s3, "lake/")
    for shard in SHARDS:
        assert keys.get(f"lake/crawl_docs/shard={shard}/part-00000.parquet", 0) > 0
        assert keys.get(f"lake/seeds/shard={shard}/part-00000.parquet", 0) > 0
        for strategy in STRATEGIES:
            directory = f"lake/rephrased/shard={shard}/strategy={strategy}/"
            assert f"{directory}{MANIFEST}" in keys
    for strategy in STRATEGIES:  # the WARC excerpt keeps no seed: its partitions finish empty
        assert any(k.startswith(f"lake/rephrased/shard={JSONL}/strategy={strategy}/part-") for k in keys)
    assert keys.get("lake/quality_classifier/model.bin", 0) > 0
    assert "lake/quality_classifier/calibration.json" in keys
    outside = [k for k in local_s3.objects() if not k.startswith(("lake/", "landing/", "cli-lake/"))]
    assert outside == []
    # Materialisation metadata names the S3 location, not a local path.
    assert graph["meta"][f"crawl_docs:{WARC}"]["path"] == f"s3://bucket/lake/crawl_docs/shard={WARC}"


def test_documents_round_trip_with_lineage_to_the_landing_file(local_s3, graph):
    for shard in SHARDS:
        rows = parquet_rows(local_s3, f"lake/crawl_docs/shard={shard}/part-00000.parquet")
        assert len(rows) == graph["meta"][f"crawl_docs:{shard}"]["rows"] > 0
        assert len({r["id"] for r in rows}) == len(rows)
        assert all(r["shard"] == shard and r["source_file"] == shard and r["text"] and r["content_hash"] for r in rows)
    # The WARC offset points at the record in the landing object: fetch that gzip member by range.
    warc = parquet_rows(local_s3, f"lake/crawl_docs/shard={WARC}/part-00000.parquet")
    row = warc[len(warc) // 2]
    start = row["offset"]
    chunk = (
        local_s3.client()
        .get_object(Bucket="bucket", Key=f"landing/{WARC}", Range=f"bytes={start}-{start + (1 << 20)}")["Body"]
        .read()
    )
    record = gzip.GzipFile(fileobj=io.BytesIO(chunk)).read(1 << 16)  # the first member: that record only
    assert record.startswith(b"WARC/1.0") and row["warc_record_id"].encode() in record and row["url"].encode() in record


def test_s3_lake_holds_the_same_documents_as_a_local_lake(graph, tmp_path):
    """Same shards, same order, local lake and landing: identical content and data versions."""
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in SHARDS:
        shutil.copy(CRAWL / name, landing / name)
    local = {"lake": Lake(root=str(tmp_path / "lake")), "landing": CrawlLanding(location=str(landing))}
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, SHARDS)
    for shard in SHARDS:
        result = materialize([crawl_docs], partition_key=shard, resources=local, instance=instance)
        version = result.get_asset_materialization_events()[0].event_specific_data.materialization.tags[
            "dagster/data_version"
        ]
        s3_table = graph["lake"].read_partition("crawl_docs", {"shard": shard})
        assert s3_table.equals(local["lake"].read_partition("crawl_docs", {"shard": shard}))
        s3_versions = [
            e.event_specific_data.materialization.tags["dagster/data_version"]
            for r in graph["results"]
            for e in r.get_asset_materialization_events()
            if e.event_specific_data.materialization.asset_key == crawl_docs.key
            and e.event_specific_data.materialization.partition == shard
        ]
        assert s3_versions == [version]


def test_seeds_and_rephrased_keep_lineage_through_s3(local_s3, graph):
    for shard in SHARDS:
        docs = parquet_rows(local_s3, f"lake/crawl_docs/shard={shard}/part-00000.parquet")
        seed_rows = parquet_rows(local_s3, f"lake/seeds/shard={shard}/part-00000.parquet")
        assert sorted(r["id"] for r in seed_rows) == sorted(r["id"] for r in docs)
        assert all(0.0 <= r["quality_score"] <= 1.0 and (r["kept"] or r["drop_reason"]) for r in seed_rows)
        kept = sorted(r["id"] for r in seed_rows if r["kept"])
        assert kept or shard == WARC, f"no kept seeds in {shard}: the rephrasing checks below would be empty"
        for strategy in STRATEGIES:
            # The kept seeds this strategy takes (some route by quality percentile, e.g. wikipedia).
            routed = sorted(
                r["id"] for r in seed_rows if r["kept"] and routes(PROMPTS[strategy], r["quality_percentile"])
            )
            directory = f"lake/rephrased/shard={shard}/strategy={strategy}"
            manifest = json.loads(local_s3.get(f"{directory}/{MANIFEST}"))
            parts = sorted(k for k in data_objects(local_s3, directory + "/") if k.endswith(".parquet"))
            rows = [r for k in parts for r in parquet_rows(local_s3, k)]
            assert len(parts) == manifest["chunks"]
            assert len(parts) == -(-len(routed) // 4) or (
                not routed and len(parts) <= 1
            )  # empty: at most one empty file
            # Every routed seed, each piece once (qa cuts long documents into pieces; summary truncates).
            assert sorted({r["source_id"] for r in rows}) == routed
            assert len({(r["source_id"], r["piece"]) for r in rows}) == len(rows)
            assert strategy != "summary" or len(rows) == len(routed)
            assert all(
                r["shard"] == shard and r["strategy"] == strategy and r["prompt_hash"] == manifest["prompt_hash"]
                for r in rows
            )
            assert manifest["rows"] == len(rows) and manifest["generator"] == graph["resources"]["engine"].generator
            for part in parts:
                assert set(pq.read_schema(io.BytesIO(local_s3.get(part))).names) >= set(REPHRASED_SCHEMA.names)
    # pyarrow's dataset view over S3 adds the Hive partition columns.
    table = graph["lake"].dataset("rephrased").to_table(columns=["shard", "strategy", "source_id"])
    assert {(JSONL, t) for t in ("qa", "summary")} <= set(
        zip(table.column("shard").to_pylist(), table.column("strategy").to_pylist())
    )


def partition_keys(partitions_def, instance) -> list:
    """The partitions of this module's data: its shards, its strategies, every key of anything else."""
    if partitions_def is None:
        return [None]
    if isinstance(partitions_def, MultiPartitionsDefinition):
        dims = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
        if set(dims) == {"shard", "strategy"}:
            return [f"{shard}|{strategy}" for shard in SHARDS for strategy in STRATEGIES]
    keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    return [k for k in keys if k in SHARDS] if partitions_def == crawl_shards else keys


@pytest.fixture(scope="module")
def everything(local_s3, graph, instance):
    """Whatever else dataset_assets.definitions registers (statistics, mixtures, ...), materialised
    after the core graph in dependency order with the same S3 resources: asset -> failures, objects."""
    from dataset_assets.definitions import defs

    resources = {**defs.resources, **graph["resources"]}
    asset_graph = defs.resolve_asset_graph()
    done = {a.key for a in ASSETS}
    failures, written = {}, {}
    for key in asset_graph.toposorted_asset_keys:
        node = asset_graph.get(key)
        if key in done or not node.is_materializable:
            continue
        for partition in partition_keys(node.partitions_def, instance):
            if key.to_user_string().startswith("proxy_") and "cpu-tiny.s0" not in str(partition or "cpu-tiny.s0"):
                continue  # one proxy run is proof enough here; the GPU tier's Pipes launch is tested apart
            result = materialize(
                list(defs.assets),
                selection=[key],
                partition_key=partition,
                resources=resources,
                instance=instance,
                raise_on_error=False,
                run_config={"ops": {key.to_user_string(): PROXY_CONFIG["ops"][key.to_user_string()]}}
                if key.to_user_string() in PROXY_CONFIG["ops"]
                else None,
            )
            graph["results"].append(result)
            if not result.success:
                failures[f"{key.to_user_string()}[{partition}]"] = failure_messages(result)[:1]
        written[key.to_user_string()] = data_objects(local_s3, "lake/" + "/".join(key.path) + "/")
    return {"failures": failures, "written": written, "defs": defs}


def test_every_registered_asset_writes_its_data_under_the_s3_lake(local_s3, everything):
    assert not everything["failures"], f"assets that could not materialise on S3: {everything['failures']}"
    written = everything["written"]
    assert all(written.values()), (
        f"assets without objects under their S3 prefix: {[k for k, v in written.items() if not v]}"
    )
    outside = [k for k in local_s3.objects() if not k.startswith(("lake/", "landing/", "cli-lake/"))]
    assert outside == []
    for objects in written.values():
        for key in objects:
            if key.endswith(".parquet"):
                pq.read_schema(io.BytesIO(local_s3.get(key)))  # a complete Parquet file, footer and all


def test_a_mixture_is_pulled_back_from_s3_with_checksums_verified(local_s3, everything, tmp_path):
    if "mixtures" not in everything["written"]:
        pytest.skip("no `mixtures` asset registered in dataset_assets.definitions")
    manifests = sorted(k for k in everything["written"]["mixtures"] if k.endswith("/manifest.json"))
    assert manifests, (
        "no published mixture version under s3://bucket/lake/mixtures/: "
        f"{sorted(everything['written']['mixtures'])[:10]}"
    )
    _, _, name, version, _ = manifests[0].split("/")
    manifest = json.loads(local_s3.get(manifests[0]))
    env = local_s3.env(DAGSTER_HOME=str(tmp_path / "home"), DATASET_LAKE="s3://bucket/lake")

    def pull(dest: Path):
        return subprocess.run(
            [sys.executable, "-m", "dataset_assets.cli", "pull", f"{name}@{version}", str(dest)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = pull(tmp_path / "pulled")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = 0
    for file_name, expected in manifest["files"].items():
        local = (tmp_path / "pulled" / file_name).read_bytes()
        remote = local_s3.get(f"lake/mixtures/{name}/{version}/{file_name}")
        assert hashlib.sha256(local).hexdigest() == hashlib.sha256(remote).hexdigest() == expected["sha256"]
        assert len(local) == expected["bytes"]
        if file_name.endswith(".parquet"):
            rows += pq.read_metadata(io.BytesIO(local)).num_rows
    assert rows == manifest["rows"] > 0

    # A truncated object on S3 is refused, and the destination is not created.
    victim = sorted(f for f in manifest["files"] if f.endswith(".parquet"))[0]
    key = f"lake/mixtures/{name}/{version}/{victim}"
    original = local_s3.get(key)
    local_s3.client().put_object(Bucket="bucket", Key=key, Body=original[: len(original) // 2])
    try:
        bad = pull(tmp_path / "corrupt")
    finally:
        local_s3.client().put_object(Bucket="bucket", Key=key, Body=original)
    assert bad.returncode == 1 and "truncated" in bad.stderr and victim in bad.stderr, bad.stdout + bad.stderr
    assert not (tmp_path / "corrupt").exists()
    assert local_s3.secret not in done.stdout + done.stderr + bad.stdout + bad.stderr


def test_no_data_is_left_under_staging_after_success(local_s3, graph):
    assert data_objects(local_s3, "lake/_staging/") == {}


def test_staging_keeps_no_directory_markers_after_success(local_s3, graph):
    leftovers = [k for k in local_s3.objects("lake/_staging/") if k != "lake/_staging/"]
    assert leftovers == [], f"{len(leftovers)} staging markers, e.g. {leftovers[:2]}"


def test_landing_sensor_sees_the_s3_shards(local_s3, graph):
    landing, lake = s3_resources(local_s3.url)["landing"], s3_resources(local_s3.url)["lake"]
    instance = DagsterInstance.ephemeral()
    first = crawl_landing_sensor(build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake}))
    assert sorted(r.partition_key for r in first.run_requests) == SHARDS  # the .part upload is not a shard
    assert first.dynamic_partitions_requests[0].partition_keys == SHARDS
    instance.add_dynamic_partitions(crawl_shards.name, SHARDS)
    again = crawl_landing_sensor(build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake}))
    assert not getattr(again, "run_requests", None)  # nothing new: a SkipReason
    local_s3.upload(CRAWL / WARC, "landing/2024/late arrival.warc.gz")
    try:
        late = crawl_landing_sensor(
            build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake})
        )
        assert [r.partition_key for r in late.run_requests] == ["2024__late_arrival.warc.gz"]
    finally:
        local_s3.client().delete_object(Bucket="bucket", Key="landing/2024/late arrival.warc.gz")


def test_landing_sensor_lists_only_keys_after_its_cursor_on_s3(local_s3, monkeypatch):
    """25 files, 10 per tick: each tick is one ListObjectsV2 request starting after the cursor
    (dagster-aws's S3Resource), never a listing of the whole landing, until nothing is new; a file
    uploaded out of name order is found by the periodic full listing."""
    from dagster_aws.s3 import S3Resource

    names = [f"seg-{i:03d}.warc.gz" for i in range(25)]
    for name in names:
        local_s3.client().put_object(Bucket="bucket", Key=f"cursor-landing/{name}", Body=b"")
    landing, lake = (s3_resources(local_s3.url, landing_prefix="cursor-landing")[k] for k in ("landing", "lake"))
    calls: list[dict] = []
    real = S3Resource.get_client

    def counting(self):
        client = real(self)
        client.meta.events.register(
            "provide-client-params.s3.ListObjectsV2", lambda params, **kw: calls.append(dict(params))
        )
        return client

    monkeypatch.setattr(S3Resource, "get_client", counting)
    monkeypatch.setenv("LANDING_SENSOR_BATCH", "10")
    instance = DagsterInstance.ephemeral()
    cursor, registered = None, []
    for expected in (10, 10, 5):
        calls.clear()
        result = crawl_landing_sensor(
            build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake}, cursor=cursor)
        )
        keys = result.dynamic_partitions_requests[0].partition_keys
        assert len(keys) == expected and len(calls) == 1, (keys, calls)
        assert calls[0].get("StartAfter") == (f"cursor-landing/{registered[-1]}" if registered else None)
        instance.add_dynamic_partitions(crawl_shards.name, keys)
        registered += keys
        cursor = result.cursor
    assert registered == names
    # Nothing after the cursor: the first such tick lists the whole landing once (pyarrow), then the
    # next ones ask S3 only for keys after the cursor until LANDING_RECONCILE_SECONDS have passed.
    idle = crawl_landing_sensor(
        build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake}, cursor=cursor)
    )
    assert not idle.run_requests and "whole landing" in idle.skip_reason.skip_message
    local_s3.client().put_object(
        Bucket="bucket", Key="cursor-landing/early-upload.warc.gz", Body=b""
    )  # sorts before the cursor
    calls.clear()
    quiet = crawl_landing_sensor(
        build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake}, cursor=idle.cursor)
    )
    assert not quiet.run_requests and len(calls) == 1 and calls[0]["StartAfter"] == "cursor-landing/seg-024.warc.gz"
    monkeypatch.setenv("LANDING_RECONCILE_SECONDS", "1")
    time.sleep(1.1)
    late = crawl_landing_sensor(
        build_sensor_context(instance=instance, resources={"landing": landing, "lake": lake}, cursor=quiet.cursor)
    )
    assert [r.partition_key for r in late.run_requests] == ["early-upload.warc.gz"]


def test_one_status_pass_makes_the_same_number_of_s3_requests_at_any_size(local_s3):
    """The status catalog on S3: one status pass over 20 or 2,000 shards (340 or 34,000 recorded
    partitions, plus a few records not compacted yet) makes the same requests, counted by moto's
    request recorder: listings and the catalog's files, never a request per partition."""
    import urllib.request

    from benchmarks.status_scale import _setup, records
    from dataset_assets.status import catalog
    from dataset_assets.status.judge import graph_status

    def moto(action: str) -> bytes:
        method = "GET" if action == "download-recording" else "POST"
        with urllib.request.urlopen(
            urllib.request.Request(f"{local_s3.url}/moto-api/recorder/{action}", method=method)
        ) as r:
            return r.read()

    strategies, bands, generator = _setup()
    requests = {}
    for n in (20, 2000):
        lake = s3_resources(local_s3.url, lake_prefix=f"status-{n}")["lake"]
        rows, shards = records(n, strategies, generator, bands)
        catalog.replace_all(lake, rows)  # as `catalog --rebuild` or a compaction leaves it
        for shard in shards[:3]:  # and three commits since
            catalog.record(lake, "crawl_docs", shard, "v2")
        moto("reset-recording")
        moto("start-recording")
        status = graph_status(lake, shards, strategies, generator, bands)
        moto("stop-recording")
        lines = [line for line in moto("download-recording").decode().splitlines() if line.strip()]
        requests[n] = len(lines)
        assert status["rephrased"].current == n * len(strategies) and status["crawl_docs"].current == n
    print(f"S3 requests per status pass: {requests}")
    assert requests[20] == requests[2000] and requests[20] <= 30, requests


def test_cli_runs_the_graph_against_s3(local_s3, graph, tmp_path):
    home = tmp_path / "home"
    env = local_s3.env(
        DAGSTER_HOME=str(home),
        DATASET_LAKE="s3://bucket/cli-lake",
        CRAWL_LANDING="s3://bucket/landing",
        QUALITY_REFERENCE=str(QUALITY),
    )
    done = subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", "run", "--select", "crawl_docs,quality_classifier,seeds"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len([line for line in done.stdout.splitlines() if line.startswith("ok")]) == 2 + 1 + 2, done.stdout
    keys = data_objects(local_s3, "cli-lake/")
    for shard in SHARDS:
        assert f"cli-lake/crawl_docs/shard={shard}/part-00000.parquet" in keys
        assert f"cli-lake/seeds/shard={shard}/part-00000.parquet" in keys
    assert "cli-lake/quality_classifier/model.bin" in keys
    assert data_objects(local_s3, "cli-lake/_staging/") == {}
    # The CLI's own Dagster home records the runs, and nowhere in it (event log, run config,
    # compute logs) nor in its output is the secret key.
    cli_instance = DagsterInstance.from_config(str(home))
    try:
        assert len(cli_instance.get_runs()) == 5
        assert sorted(cli_instance.get_dynamic_partitions("crawl_shards")) == SHARDS
    finally:
        cli_instance.dispose()
    assert local_s3.secret not in done.stdout + done.stderr
    assert files_containing(home, local_s3.secret) == []


@pytest.fixture(scope="module")
def cli_against_a_dead_endpoint(local_s3, tmp_path_factory):
    """`dataset-assets run` with the lake on an S3 endpoint where nothing listens."""
    root = tmp_path_factory.mktemp("dead-endpoint")
    (root / "landing").mkdir()
    shutil.copy(CRAWL / WARC, root / "landing" / WARC)
    env = local_s3.env(
        DAGSTER_HOME=str(root / "home"),
        DATASET_LAKE="s3://bucket/dead-lake",
        CRAWL_LANDING=str(root / "landing"),
        S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", "run", "--select", "crawl_docs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, time.monotonic() - start


def test_cli_fails_fast_and_names_the_step_when_the_endpoint_is_down(cli_against_a_dead_endpoint, local_s3):
    done, seconds = cli_against_a_dead_endpoint
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"FAILED crawl_docs[{WARC}]" in done.stdout and f"1 step(s) failed: crawl_docs[{WARC}]" in done.stderr
    assert "NETWORK_CONNECTION" in done.stdout + done.stderr  # the cause is in Dagster's console log
    assert seconds < 120, f"the CLI took {seconds:.0f} s to give up on a dead endpoint"
    assert local_s3.secret not in done.stdout + done.stderr


def test_cli_failure_summary_names_the_cause(cli_against_a_dead_endpoint):
    done, _ = cli_against_a_dead_endpoint
    # The CLI's reason lines (7 spaces, then "name: message"), not Dagster's own traceback output.
    reasons = [line.strip() for line in done.stderr.splitlines() if re.match(r"^ {7}[A-Za-z_][\w.]*: ", line)]
    assert reasons and all("NETWORK_CONNECTION" in line for line in reasons), reasons


def test_cli_with_batches_says_the_registry_is_unreachable(local_s3, tmp_path):
    """With CRAWL_BATCH_FILES > 1 registration writes the lake's batch registry: a dead endpoint stops
    the run before any step, with the cause and no traceback (and no partition registered)."""
    (tmp_path / "landing").mkdir()
    shutil.copy(CRAWL / WARC, tmp_path / "landing" / WARC)
    env = local_s3.env(
        DAGSTER_HOME=str(tmp_path / "home"),
        DATASET_LAKE="s3://bucket/dead-lake",
        CRAWL_LANDING=str(tmp_path / "landing"),
        S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        CRAWL_BATCH_FILES="2",
    )
    shutil.copy(CRAWL / JSONL, tmp_path / "landing" / JSONL)
    done = subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", "run", "--select", "crawl_docs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "could not register the landing's files in batches" in done.stderr, (
        done.stdout + done.stderr
    )
    assert "NETWORK_CONNECTION" in done.stderr and "Traceback" not in done.stderr and local_s3.secret not in done.stderr
    instance = DagsterInstance.from_config(str(tmp_path / "home"))
    try:
        assert instance.get_dynamic_partitions(crawl_shards.name) == []
    finally:
        instance.dispose()


def files_containing(directory: Path, needle: str) -> list[str]:
    found = []
    for path in Path(directory).rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path))
    return found


# -- fault drills: the endpoint goes away in the middle of a run -----------------------------------
def test_endpoint_outage_during_a_crawl_docs_write_leaves_no_finished_object_and_a_retry_completes(
    local_s3, graph, instance, monkeypatch
):
    """The lake's endpoint (a relay in front of moto, which keeps its objects) is cut after the
    first batch has gone into the open Parquet stream; the landing stays reachable."""
    import dataset_assets.defs.crawl as crawl_module

    bucket = local_s3.create_bucket("drill-crawl")
    local_s3.upload(CRAWL / JSONL, f"landing/{JSONL}", bucket)
    resources = s3_resources(local_s3.relay_url, bucket=bucket)
    resources["landing"] = s3_resources(local_s3.url, bucket=bucket)["landing"]
    real_ingest = crawl_module.ingest_shard

    def ingest_then_outage(*args, **kwargs):
        for n, batch in enumerate(real_ingest(*args, **kwargs)):
            yield batch
            if n == 0:
                local_s3.relay.cut()

    monkeypatch.setattr(crawl_module, "ingest_shard", ingest_then_outage)
    start = time.monotonic()
    failed = materialize(
        [crawl_docs], partition_key=JSONL, resources=resources, instance=instance, raise_on_error=False
    )
    seconds = time.monotonic() - start
    assert not failed.success and not local_s3.relay.up
    messages = failure_messages(failed)
    assert len(messages) == 1 and "crawl_docs" in str(failed.get_step_failure_events()[0].step_key)
    # The error says what could not be written where, and why: the endpoint, not the data.
    assert "lake/_staging/" in messages[0] and "bucket 'drill-crawl'" in messages[0], messages
    assert "NETWORK_CONNECTION" in messages[0] or "connect" in messages[0].lower(), messages
    assert seconds < 60, f"a dead endpoint took {seconds:.0f} s to fail the run"
    # Nothing under the asset looks finished: no part file, so no partition.
    assert data_objects(local_s3, "lake/crawl_docs/", bucket) == {}
    assert [k for k in data_objects(local_s3, "lake/_staging/", bucket)] == []  # the staged upload never completed
    direct = s3_resources(local_s3.url, bucket=bucket)["lake"]
    assert direct.partition_values("crawl_docs", "shard") == []

    local_s3.relay.restore()
    monkeypatch.setattr(crawl_module, "ingest_shard", real_ingest)
    retry = materialize([crawl_docs], partition_key=JSONL, resources=resources, instance=instance)
    assert retry.success
    rows = parquet_rows(local_s3, f"lake/crawl_docs/shard={JSONL}/part-00000.parquet", bucket)
    assert len(rows) == materialisations(retry)[JSONL]["rows"] == graph["meta"][f"crawl_docs:{JSONL}"]["rows"]


class OutageEngine(ScriptedEngine):
    """Answers like ScriptedEngine, and cuts the relay once it has answered `cut_after` requests."""

    cut_after: int = 3

    def _generate(self, requests):
        out = super()._generate(requests)
        if len(self.seen) >= self.cut_after and CUTTERS:
            CUTTERS[-1]()
        return out


CUTTERS: list = []  # the relay's cut(), set by the drill (resources are copied, callables are not config)


def test_endpoint_outage_between_rephrased_chunks_leaves_no_manifest_and_a_retry_resumes(
    local_s3, instance, monkeypatch
):
    bucket = local_s3.create_bucket("drill-rephrase")
    shard, strategy = "drill-shard", "qa"
    direct = s3_resources(local_s3.url, bucket=bucket)["lake"]
    seed_rows = [
        {
            **{n: None for n in SEED_SCHEMA.names},
            "id": f"seed-{i}",
            "text": english(i) + " " + english(i + 40),
            "shard": shard,
            "url": f"http://x/{i}",
            "quality_score": 0.9,
            "quality_percentile": 95.0,
            "kept": True,
        }
        for i in range(6)
    ]
    direct.write_partition(
        "seeds", {"shard": shard}, pa.Table.from_pylist(seed_rows, SEED_SCHEMA).to_batches(), SEED_SCHEMA
    )
    instance.add_dynamic_partitions(crawl_shards.name, [shard])
    resources = s3_resources(local_s3.relay_url, bucket=bucket)
    resources["engine"] = OutageEngine(cut_after=3)  # chunk 0 holds requests 1-2; the cut comes inside chunk 1
    monkeypatch.setattr(sys.modules[__name__], "CUTTERS", [local_s3.relay.cut])
    config = {"chunk_docs": 2}

    failed = rephrase(instance, resources, [shard], [strategy], config, raise_on_error=False)
    assert not failed.success and not local_s3.relay.up
    messages = failure_messages(failed)
    # The error names the bucket and the network failure (not which file: see the report).
    assert len(messages) == 1 and f"bucket '{bucket}'" in messages[0] and "NETWORK_CONNECTION" in messages[0], messages
    directory = f"lake/rephrased/shard={shard}/strategy={strategy}/"
    left = data_objects(local_s3, directory, bucket)
    assert sorted(left) == [f"{directory}part-00000.parquet"]  # the committed chunk; no manifest, no torn chunk 1
    committed = parquet_rows(local_s3, f"{directory}part-00000.parquet", bucket)
    assert sorted(r["source_id"] for r in committed) == ["seed-0", "seed-1"]
    assert list(finished_partitions(direct)) == []  # without a manifest the partition is not finished
    assert data_objects(local_s3, "lake/_staging/", bucket) == {}

    local_s3.relay.restore()
    CUTTERS.clear()
    resources["engine"] = ScriptedEngine()
    retry = rephrase(instance, resources, [shard], [strategy], config)
    meta = materialisations(retry)[f"{shard}|{strategy}"]
    assert meta["chunks_reused"] == 1 and meta["chunks_generated"] == 2 and meta["rows"] == 6
    rows = [
        r
        for k in sorted(data_objects(local_s3, directory, bucket))
        if k.endswith(".parquet")
        for r in parquet_rows(local_s3, k, bucket)
    ]
    assert sorted(r["source_id"] for r in rows) == [f"seed-{i}" for i in range(6)]
    assert [(s, t) for s, t, _ in finished_partitions(direct)] == [(shard, strategy)]


def test_moto_killed_mid_write_fails_the_run_fast_and_a_restarted_endpoint_takes_the_retry(
    tmp_path, local_s3, monkeypatch
):
    """The real server process is SIGKILLed while crawl_docs streams its Parquet file. moto loses its
    memory with the process, so the restarted server gets a fresh bucket and the shard again, and
    the retry runs from scratch; the relay drills above are the ones that inspect leftovers."""
    import dataset_assets.defs.crawl as crawl_module

    server = MotoServer(tmp_path, port=free_port()).start()
    try:
        own = LocalS3(server, local_s3.relay, local_s3.credentials, bucket="killed")

        def fill():
            own.create_bucket("killed")
            own.upload(CRAWL / WARC, f"landing/{WARC}")

        fill()
        resources = s3_resources(server.url, bucket="killed")
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(crawl_shards.name, [WARC])
        real_ingest = crawl_module.ingest_shard

        def ingest_then_kill(*args, **kwargs):
            for n, batch in enumerate(real_ingest(*args, **kwargs)):
                yield batch
                if n == 0:
                    server.kill()

        monkeypatch.setattr(crawl_module, "ingest_shard", ingest_then_kill)
        start = time.monotonic()
        failed = materialize(
            [crawl_docs], partition_key=WARC, resources=resources, instance=instance, raise_on_error=False
        )
        seconds = time.monotonic() - start
        assert not failed.success and server.proc.poll() is not None
        message = failure_messages(failed)[0]
        assert "killed" in message and ("NETWORK_CONNECTION" in message or "connect" in message.lower()), message
        assert seconds < 60, f"a dead endpoint took {seconds:.0f} s to fail the run"

        server.start()  # same port, empty memory
        fill()
        monkeypatch.setattr(crawl_module, "ingest_shard", real_ingest)
        retry = materialize(
            [crawl_docs], partition_key=WARC, resources=s3_resources(server.url, bucket="killed"), instance=instance
        )
        assert retry.success
        assert (
            len(parquet_rows(own, f"lake/crawl_docs/shard={WARC}/part-00000.parquet", "killed"))
            == materialisations(retry)[WARC]["rows"]
            > 0
        )
    finally:
        server.stop()


def test_no_credential_in_the_event_log_or_metadata(local_s3, graph, instance):
    """Every event of every run in this module (the failed drills included), their metadata, run
    configs and tags, and every file of the instance's home: the secret key appears nowhere."""
    secret = local_s3.secret
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == secret  # the runs did read it, from the environment
    runs = instance.get_runs()
    assert len(runs) >= 7
    events = 0
    for run in runs:
        assert secret not in repr(run.run_config) and secret not in repr(run.tags)
        for entry in instance.all_logs(run.run_id):
            events += 1
            assert secret not in repr(entry), f"secret in an event of run {run.run_id}: {entry.dagster_event_type}"
    assert events > 50
    for meta in graph["meta"].values():
        assert secret not in repr(meta)
    assert files_containing(Path(instance.root_directory), secret) == []
