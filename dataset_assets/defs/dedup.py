"""Exact and near-duplicate removal across the crawl, as three stages of the graph.

`dedup_signatures` [shard] -> `dedup_buckets` [exact | near-NN] -> `dedup_clusters` -> `seeds`.
A new shard costs its own signatures; the band partitions regroup one key column of every shard and
the clustering re-runs over the candidates only. `seeds` applies the clusters' decisions per shard and
records which decisions it applied, so a clustering that changes a shard's decisions makes exactly
that shard's seeds outdated (see `dedup_seeds_sensor` and the nightly backfill).
"""

import hashlib
import json
from collections import Counter
from typing import Optional

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    Config,
    DataVersion,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    sensor,
)

from dataset_assets import settings
from dataset_assets.dedup import buckets as bucket_stage
from dataset_assets.dedup.clusters import (
    ClusterStats,
    cluster,
    largest_clusters,
    largest_markdown,
    removed_per_shard,
    size_distribution,
)
from dataset_assets.dedup.minhash import PARAMS_KEY, MinHashParams
from dataset_assets.dedup.signatures import READ_COLUMNS, counted_signature_batches, signature_schema
from dataset_assets.dedup.store import (
    BUCKETS,
    CLUSTERS,
    COVERED_KEY,
    SIGNATURES,
    ParameterMismatch,
    read_buckets,
    read_signature_keys,
    texts_loader,
    write_clusters,
)
from dataset_assets.orchestration.graph import BAND_GROUPS, CRAWL_DOCS, SEEDS, crawl_shards, dedup_bands
from dataset_assets.orchestration.in_flight import in_flight_partitions
from dataset_assets.orchestration.shard_runs import (
    ShardResult,
    each_shard,
    first_groups,
    shard_backfill_policy,
    shard_groups,
    shard_run_request,
)
from dataset_assets.progress import Progress
from dataset_assets.stats.plots import cluster_sizes_png, png_markdown
from dataset_assets.status import batches, catalog
from dataset_assets.status.dedup_decisions import seeds_partitions_to_redo
from dataset_assets.status.lake_walk import facts_buckets
from resources.lake import Lake

GROUP = "dedup"

# Run when an upstream partition updates, without waiting for every shard to have one: a registered
# shard that never materialises (a file that is not a shard) must not stall the crawl's dedup.
_BUCKETS_DUE = AutomationCondition.any_deps_updated()
_CLUSTERS_DUE = AutomationCondition.any_deps_match(AutomationCondition.newly_updated()).allow(
    AssetSelection.assets(BUCKETS)
)


def _after(due) -> AutomationCondition:
    return (
        (AutomationCondition.newly_missing() | due).since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("after its inputs update")


class MinHashConfig(Config):
    ngram: int = 5  # word n-grams after folding case, punctuation and white space (FineWeb: 5)
    bands: int = 14  # LSH bands; bands x rows hash functions (FineWeb: 14 x 8 = 112)
    rows: int = 8
    seed: int = 1

    def params(self) -> MinHashParams:
        try:
            return MinHashParams(self.ngram, self.bands, self.rows, self.seed)
        except ValueError as exc:
            raise Failure(str(exc)) from exc


class ClusterConfig(MinHashConfig):
    # Keep a near-duplicate candidate only when the Jaccard similarity of the actual n-gram sets
    # reaches this (null: trust the LSH collision, as datatrove does).
    verify_threshold: Optional[float] = 0.75


def _covered(lake: Lake) -> list[str]:
    return lake.partition_values(SIGNATURES, "shard")


@asset(
    partitions_def=crawl_shards,
    deps=[CRAWL_DOCS],
    backfill_policy=shard_backfill_policy(),
    group_name=GROUP,
    kinds={"parquet"},
    code_version="1",
    description="Per document: the exact content key and the MinHash LSH band keys of its word n-grams.",
)
def dedup_signatures(context: AssetExecutionContext, config: MinHashConfig, lake: Lake) -> MaterializeResult:
    return each_shard(context, lake, lambda shard: _sign_one(context, config, lake, shard))


def _sign_one(context: AssetExecutionContext, config: MinHashConfig, lake: Lake, shard: str) -> ShardResult:
    params = config.params()
    progress = Progress(
        context.log.info, f"{shard}: documents signed", total=lake.partition_rows("crawl_docs", {"shard": shard})
    )
    counts = Counter()
    docs = lake.iter_partition_batches("crawl_docs", {"shard": shard}, READ_COLUMNS, 512)
    signed = counted_signature_batches(docs, params, counts, progress.update)
    written = lake.write_partition(
        SIGNATURES, {"shard": shard}, signed, signature_schema(params), {PARAMS_KEY: params.key()}
    )
    catalog.record(lake, SIGNATURES, shard, written.data_version, params=params.key())
    context.log.info(
        f"{shard}: {counts['documents']} documents signed, {counts['without_signature']} too short for a "
        f"{params.ngram}-gram"
    )
    return (
        {
            "rows": written.rows,
            "bytes": written.bytes,
            "documents": counts["documents"],
            "without_signature": counts["without_signature"],
            "params": MetadataValue.json(json.loads(params.key())),
            "lsh_threshold": round(params.lsh_threshold(), 3),
        },
        written.data_version,
    )


@asset(
    partitions_def=dedup_bands,
    deps=[AssetDep(dedup_signatures, partition_mapping=AllPartitionMapping())],  # every shard's signatures
    group_name=GROUP,
    kinds={"parquet"},
    code_version="1",
    automation_condition=_after(_BUCKETS_DUE),
    description="Per LSH band (and the exact key): every document that shares a bucket with another, rooted at the "
    "bucket's smallest id.",
)
def dedup_buckets(context: AssetExecutionContext, config: MinHashConfig, lake: Lake) -> MaterializeResult:
    partition, params = context.partition_key, config.params()
    columns = bucket_stage.key_columns(partition, params, BAND_GROUPS)
    shards = _covered(lake)
    try:
        table = read_signature_keys(lake, shards, params, columns)
    except ParameterMismatch as exc:
        raise Failure(description=str(exc)) from exc
    members = (
        bucket_stage.MEMBER_SCHEMA.empty_table()
        if table is None
        else bucket_stage.partition_members(table, partition, params, BAND_GROUPS)
    )
    meta = {PARAMS_KEY: params.key(), COVERED_KEY: json.dumps(shards)}
    written = lake.write_partition(BUCKETS, {"band": partition}, members.to_batches(), bucket_stage.MEMBER_SCHEMA, meta)
    catalog.record(lake, BUCKETS, partition, written.data_version, **facts_buckets(shards))
    buckets = len(set(zip(members.column("band").to_pylist(), members.column("root").to_pylist())))
    context.log.info(f"{partition}: {members.num_rows} documents in {buckets} shared buckets over {len(shards)} shards")
    return MaterializeResult(
        metadata={
            "rows": written.rows,
            "bytes": written.bytes,
            "shards": len(shards),
            "documents": table.num_rows if table is not None else 0,
            "shared_buckets": buckets,
            "bands": MetadataValue.json(columns),
        },
        data_version=DataVersion(written.data_version),
    )


@asset(
    deps=[dedup_buckets, AssetDep(CRAWL_DOCS, partition_mapping=AllPartitionMapping())],
    group_name=GROUP,
    kinds={"parquet"},
    code_version="1",
    automation_condition=_after(_CLUSTERS_DUE),
    description="Duplicate clusters over the whole crawl: one representative each (earliest crawl date, then smallest "
    "id); every other member removed as `duplicate` or `near_duplicate`.",
)
def dedup_clusters(context: AssetExecutionContext, config: ClusterConfig, lake: Lake) -> MaterializeResult:
    params = config.params()
    try:
        members, covered = read_buckets(lake, params, dedup_bands.get_partition_keys())
    except ValueError as exc:
        raise Failure(description=str(exc)) from exc
    stats = ClusterStats()
    decisions = cluster(members, texts_loader(lake), params.ngram, config.verify_threshold, stats)
    written, fingerprints = write_clusters(lake, decisions, covered, params, config.verify_threshold)
    catalog.record(lake, CLUSTERS, "", written.data_version, fingerprints=fingerprints)
    sizes = size_distribution(decisions)
    plot = cluster_sizes_png(sizes)
    lake.put_bytes([CLUSTERS, "cluster_sizes.png"], plot)
    context.log.info(
        f"{len(covered)} shards: {sum(sizes.values())} clusters; removed {stats.removed['duplicate']} exact and "
        f"{stats.removed['near_duplicate']} near duplicates; {stats.near_pairs_checked} candidate pairs verified, "
        f"{stats.near_pairs_rejected} rejected"
    )
    return MaterializeResult(
        metadata={
            "rows": written.rows,
            "shards": len(covered),
            "clusters": sum(sizes.values()),
            "removed_exact": stats.removed["duplicate"],
            "removed_near": stats.removed["near_duplicate"],
            "candidate_rows": stats.candidate_rows,
            "pairs_verified": stats.near_pairs_checked,
            "pairs_rejected": stats.near_pairs_rejected,
            "verify_threshold": config.verify_threshold if config.verify_threshold is not None else "off",
            "cluster_sizes": MetadataValue.json({str(k): v for k, v in sizes.items()}),
            "removed_per_shard": MetadataValue.json(removed_per_shard(decisions, covered)),
            "largest_clusters": MetadataValue.md(largest_markdown(largest_clusters(decisions))),
            "cluster_size_plot": MetadataValue.md(png_markdown("cluster sizes", plot)),
            "plot_path": MetadataValue.path(lake.uri(CLUSTERS, "cluster_sizes.png")),
        },
        data_version=DataVersion(written.data_version),
    )


@sensor(
    asset_selection=AssetSelection.assets(SEEDS),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="When dedup_clusters change, requests seeds for exactly the shards whose dedup decisions changed "
    "(or that have no seeds yet): consecutive shards share a run (up to BACKFILL_SHARDS_PER_RUN), at most "
    "LANDING_SENSOR_BATCH shards per tick.",
)
def dedup_seeds_sensor(context: SensorEvaluationContext, lake: Lake):
    try:
        recorded = catalog.read(lake)  # one read of the status catalog, no footer per shard
    except (catalog.CatalogMissing, catalog.CatalogDamaged) as exc:
        return SkipReason(str(exc))
    clusters = catalog.facts(recorded, CLUSTERS).get("")
    if clusters is None:
        return SkipReason("dedup_clusters has not been materialised yet")
    fingerprints = clusters["fingerprints"]
    state = hashlib.sha256(repr(sorted(fingerprints.items())).encode()).hexdigest()[:16]
    if state == context.cursor:
        return SkipReason("dedup_clusters unchanged since the last tick")
    # Files whose seeds are to be (re)built, as the partitions (batches of files) that hold them.
    order = context.instance.get_dynamic_partitions(crawl_shards.name)
    redo = seeds_partitions_to_redo(
        fingerprints, catalog.facts(recorded, "seeds"), order, batches.for_keys(lake, order)
    )
    files, needed, gone = redo.files, redo.partitions, redo.gone
    # A seeds partition an unfinished run or backfill already covers (the nightly backfill builds seeds
    # after the clusters) is left to it; the cursor then stays, so the next tick looks again.
    busy = {
        k.partition_key
        for k in in_flight_partitions(context.instance, context.repository_def.asset_graph)
        if k.asset_key == SEEDS
    }
    requested = needed - busy
    groups = shard_groups(order, requested, settings.backfill_shards_per_run())
    # Bounded work per tick: at most LANDING_SENSOR_BATCH shards' runs; the cursor stays while some
    # are left (or busy), so the next tick requests the rest.
    chosen = first_groups(groups, settings.landing_batch())
    asked = sum(len(g) for g in chosen)
    context.log.info(
        f"dedup clusters {state}: seeds of {len(files)} of {len(fingerprints)} shard files to (re)build, in "
        f"{len(needed)} partitions, {len(needed) - len(requested)} of them already in an unfinished run or backfill"
        + (f"; {gone} files no longer registered" if gone else "")
        + f"; requesting {asked} partitions in {len(chosen)} runs"
    )
    return SensorResult(
        run_requests=[shard_run_request(group, "dedup", redo.versions(group)) for group in chosen],
        cursor=state if asked == len(needed) else context.cursor,
    )
