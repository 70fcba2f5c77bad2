"""Sensors: new landing files become `crawl_shards` partitions; new dedup clusters rebuild exactly the
seeds partitions whose dedup decisions changed."""

import hashlib

from dagster import AssetSelection, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from dataset_assets import settings
from dataset_assets.assets.crawl import crawl_docs
from dataset_assets.assets.dedup import dedup_signatures
from dataset_assets.assets.seeds import seeds
from dataset_assets.dedup.store import cluster_fingerprints, seeds_needing_dedup
from dataset_assets.nightly import in_flight_partitions
from dataset_assets.partitions import crawl_shards
from resources.lake import Lake
from resources.landing import CrawlLanding


def new_shard_keys(landing: CrawlLanding, known: set[str]) -> list[str]:
    return [key for key in landing.files() if key not in known]


@sensor(
    asset_selection=AssetSelection.assets(crawl_docs, dedup_signatures),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a crawl_shards partition for every new file in the landing location and requests its documents "
    "and dedup signatures; the dedup stages and seeds follow.",
)
def crawl_landing_sensor(context: SensorEvaluationContext, landing: CrawlLanding):
    known = set(context.instance.get_dynamic_partitions(crawl_shards.name))
    found = new_shard_keys(landing, known)
    if not found:
        return SkipReason(f"no new shard files in {landing.location}")
    # Bounded work per tick: a landing of 100,000 files is registered over several ticks, and the
    # log says how many, not which (the partitions page lists them).
    keys = found[: settings.landing_batch()]
    left = len(found) - len(keys)
    context.log.info(
        f"{len(found)} new shard files in {landing.location}; registering {len(keys)} ({keys[0]} .. {keys[-1]})"
        + (f", {left} left for the next ticks" if left else "")
    )
    return SensorResult(
        run_requests=[RunRequest(partition_key=key, run_key=f"shard:{key}") for key in keys],
        dynamic_partitions_requests=[crawl_shards.build_add_request(keys)],
    )


@sensor(
    asset_selection=AssetSelection.assets(seeds),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="When dedup_clusters change, requests seeds for exactly the shards whose dedup decisions changed "
    "(or that have no seeds yet).",
)
def dedup_seeds_sensor(context: SensorEvaluationContext, lake: Lake):
    fingerprints = cluster_fingerprints(lake)
    if fingerprints is None:
        return SkipReason("dedup_clusters has not been materialised yet")
    state = hashlib.sha256(repr(sorted(fingerprints.items())).encode()).hexdigest()[:16]
    if state == context.cursor:
        return SkipReason("dedup_clusters unchanged since the last tick")
    needed = seeds_needing_dedup(lake, sorted(fingerprints))
    # A seeds partition an unfinished run or backfill already covers (the nightly backfill builds seeds
    # after the clusters) is left to it; the cursor then stays, so the next tick looks again.
    busy = {k.partition_key for k in in_flight_partitions(context.instance, context.repository_def.asset_graph) if k.asset_key == seeds.key}
    requested = sorted(shard for shard in needed if shard not in busy)
    context.log.info(
        f"dedup clusters {state}: seeds of {len(needed)} of {len(fingerprints)} shards to (re)build, "
        f"{len(needed) - len(requested)} of them already in an unfinished run or backfill"
    )
    return SensorResult(
        run_requests=[RunRequest(partition_key=shard, run_key=f"dedup:{shard}:{fingerprints[shard]}") for shard in requested],
        cursor=state if len(requested) == len(needed) else context.cursor,
    )
