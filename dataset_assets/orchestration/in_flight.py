"""Partitions an unfinished run or backfill already covers: the sensors leave them out.

Shared by the nightly backfill and the dedup seeds sensor, so it lives beside `graph.py` and not in
either `defs` module.
"""

from __future__ import annotations

from dagster import DagsterInstance, PartitionKeyRange, RunsFilter

from dataset_assets.orchestration.dagster_internals import (
    NOT_FINISHED_STATUSES,
    AssetKeyPartitionKey,
    BulkActionsFilter,
    BulkActionStatus,
    partition_loading_context,
)

# Backfills that may still launch runs: their targets are not ours to launch again.
UNFINISHED_BACKFILLS = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def keys_in_range(pdef, start: str, end: str, instance: DagsterInstance) -> list[str]:
    """The partition keys a range run covers (a shard range of crawl_docs or dedup_signatures, a
    (shard x strategy) range of rephrased), reading dynamic partitions from the instance."""
    with partition_loading_context(dynamic_partitions_store=instance):
        return list(pdef.get_partition_keys_in_range(PartitionKeyRange(start, end)))


def in_flight_partitions(instance: DagsterInstance, asset_graph) -> set[AssetKeyPartitionKey]:
    """Partitions an unfinished backfill targets or an unfinished run (queued or started) covers.

    Launching them again would materialise a partition twice at once (last night's backfill still
    running, a run the automation sensor started, a UI backfill).
    """
    busy: set[AssetKeyPartitionKey] = set()
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=UNFINISHED_BACKFILLS)):
        data = backfill.asset_backfill_data
        if data is not None:
            busy.update(data.target_subset.iterate_asset_partitions())
    for run in instance.get_runs(filters=RunsFilter(statuses=NOT_FINISHED_STATUSES)):
        for key in run.asset_selection or []:
            if not asset_graph.has(key):
                continue
            pdef = asset_graph.get(key).partitions_def
            if pdef is None:
                continue
            if run.tags.get("dagster/partition"):
                busy.add(AssetKeyPartitionKey(key, run.tags["dagster/partition"]))
            elif run.tags.get(RANGE_START) and run.tags.get(RANGE_END):
                keys = keys_in_range(pdef, run.tags[RANGE_START], run.tags[RANGE_END], instance)
                busy.update(AssetKeyPartitionKey(key, k) for k in keys)
    return busy
