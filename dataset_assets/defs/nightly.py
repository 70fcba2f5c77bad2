"""The nightly backfill: Dagster backfills of exactly the missing and outdated partitions, at most
NIGHTLY_BACKFILL_MAX_PARTITIONS each (more work is split and launched part after part).

It is a sensor that acts once per cron slot, not a `@schedule`: Dagster's scheduler daemon launches
a `RunRequest.for_asset_graph_subset` as one plain, unpartitioned run (it fails: "Cannot access
partition_key for a non-partitioned run"), while the sensor daemon submits it as an asset backfill,
which is what the single-run backfill policy and the UI's backfill page need.
"""

import datetime
from typing import Optional

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dataset_assets import settings
from dataset_assets.orchestration.dagster_internals import (
    AssetGraphSubset,
    AssetKeyPartitionKey,
    BulkActionsFilter,
    get_latest_completed_cron_tick,
    get_next_cron_tick,
)
from dataset_assets.orchestration.graph import (
    CRAWL_DOCS,
    DEDUP_BUCKETS,
    DEDUP_CLUSTERS,
    DEDUP_SIGNATURES,
    REPHRASED,
    SEEDS,
    crawl_shards,
    dedup_bands,
    rephrased_partitions,
)
from dataset_assets.orchestration.in_flight import UNFINISHED_BACKFILLS, in_flight_partitions
from dataset_assets.rephrase.strategies import load_strategies
from dataset_assets.status.catalog import CatalogDamaged, CatalogMissing
from dataset_assets.status.judge import graph_status
from dataset_assets.status.nightly import MORE, backlog, slot_to_act_on
from resources.lake import Lake
from resources.llm import LLMEngine


def needed_partitions(
    lake: Lake, shards: list[str], engine_generator: str, limit: Optional[int] = None
) -> tuple[set[AssetKeyPartitionKey], int]:
    """(the partitions to backfill now, how many are missing or outdated in all): every partition
    `graph_status` finds missing or outdated, in whole shards up to about `limit` (`nightly.backlog`)."""
    status = graph_status(
        lake, shards, load_strategies(settings.prompts_dir()), engine_generator, dedup_bands.get_partition_keys()
    )
    pairs, total = backlog(status, limit)
    return {AssetKeyPartitionKey(AssetKey(name), _partition_key(name, key)) for name, key in pairs}, total


def _partition_key(asset: str, key: str):
    return rephrased_partitions.get_partition_key_from_str(key) if asset == "rephrased" else key


NIGHTLY_TAG = "nightly_backfill"


def due_slot(cron: str, now: datetime.datetime, cursor: Optional[str]) -> tuple[Optional[float], str]:
    """(the cron slot to act on now, or None; the cursor to store): `nightly.slot_to_act_on`."""
    return slot_to_act_on(get_latest_completed_cron_tick(cron, now, "UTC").timestamp(), cursor)


@sensor(
    name="nightly_backfill",
    asset_selection=AssetSelection.assets(
        CRAWL_DOCS, DEDUP_SIGNATURES, DEDUP_BUCKETS, DEDUP_CLUSTERS, SEEDS, REPHRASED
    ),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=f"At each slot of the cron {settings.backfill_cron()!r} (UTC; NIGHTLY_BACKFILL_CRON): backfill missing "
    "shards and every rephrased partition that is missing or outdated (new strategy, edited prompt, new shard, new "
    "generator, changed kept seeds), leaving out partitions an unfinished run or backfill covers. One asset backfill; "
    "the single-run backfill policy groups GPU work.",
)
def nightly_backfill(context: SensorEvaluationContext, lake: Lake, engine: LLMEngine):
    cron = settings.backfill_cron()
    now = datetime.datetime.now(datetime.timezone.utc)
    slot, cursor = due_slot(cron, now, context.cursor)
    if slot is None:
        nxt = get_next_cron_tick(cron, now, "UTC")
        return SensorResult(
            skip_reason=SkipReason(f"next backfill at {nxt:%Y-%m-%d %H:%M} UTC ({cron})"), cursor=cursor
        )
    # While the backfill this sensor launched last is unfinished, launch nothing: one cheap query
    # instead of computing the status and walking every key that backfill targets.
    # A split slot waits for its previous part to finish and goes on (the cursor keeps MORE).
    continuing = bool(context.cursor and context.cursor.endswith(MORE))
    previous = context.instance.get_backfills(
        filters=BulkActionsFilter(statuses=UNFINISHED_BACKFILLS, tags={"dagster/from": NIGHTLY_TAG}), limit=1
    )
    if previous:
        reason = (
            f"the previous nightly backfill {previous[0].backfill_id} is still unfinished: its partitions are in an "
            "unfinished run or backfill"
        )
        return SensorResult(skip_reason=SkipReason(reason), cursor=context.cursor if continuing else cursor)
    shards = context.instance.get_dynamic_partitions(crawl_shards.name)
    try:
        wanted, total = needed_partitions(lake, shards, engine.generator, settings.backfill_max_partitions())
    except (CatalogMissing, CatalogDamaged) as exc:  # never a slow walk inside a sensor tick
        return SensorResult(skip_reason=SkipReason(str(exc)), cursor=context.cursor)
    if not wanted:
        return SensorResult(
            skip_reason=SkipReason("every shard and (shard x strategy) partition is current"), cursor=cursor
        )
    if total > len(wanted):  # the rest goes into the next backfill, once this one has finished
        context.log.info(
            f"{total} partitions are missing or outdated: this backfill takes {len(wanted)} "
            "(NIGHTLY_BACKFILL_MAX_PARTITIONS)"
        )
        cursor += MORE
    asset_graph = context.repository_def.asset_graph
    busy = wanted & in_flight_partitions(context.instance, asset_graph)
    wanted -= busy
    if not wanted:
        reason = f"all {len(busy)} missing or outdated partitions are in an unfinished run or backfill"
        return SensorResult(skip_reason=SkipReason(reason), cursor=cursor)
    if busy:
        context.log.info(f"leaving out {len(busy)} partitions already in an unfinished run or backfill")
    subset = AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)
    context.log.info(
        f"backfilling {len(wanted)} partitions for the "
        f"{datetime.datetime.fromtimestamp(slot, datetime.timezone.utc):%Y-%m-%d %H:%M} UTC slot"
    )
    request = RunRequest.for_asset_graph_subset(subset, tags={"dagster/from": NIGHTLY_TAG})
    return SensorResult(run_requests=[request], cursor=cursor)
