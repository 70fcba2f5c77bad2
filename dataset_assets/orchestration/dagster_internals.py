"""The only module that imports Dagster's private (`dagster._...`) names, and why each is needed.

Dagster 1.13 has no public API for these; keeping them here means an upgrade that moves one breaks
this module, and `tests/unit/test_dagster_internals.py`, in one place instead of a sensor at 2 am.

- `AssetGraphSubset`, `AssetKeyPartitionKey`: `RunRequest.for_asset_graph_subset` (public) takes an
  `AssetGraphSubset`, the one way a sensor can submit a multi-asset, multi-partition asset backfill.
- `BulkActionsFilter`, `BulkActionStatus`: `DagsterInstance.get_backfills` (public) filters with them.
- `NOT_FINISHED_STATUSES`: the run statuses Dagster itself counts as unfinished.
- `partition_loading_context`: how Dagster 1.13 lets `get_partition_keys_in_range` of a dynamic
  partitions definition see the instance's keys (its own `dynamic_partitions_store` argument is gone).
- `get_latest_completed_cron_tick`, `get_next_cron_tick`: the cron arithmetic Dagster's own scheduler
  uses, so the nightly sensor's slots match a schedule's to the second.
"""

from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES
from dagster._utils.schedules import get_latest_completed_cron_tick, get_next_cron_tick

__all__ = [
    "AssetGraphSubset",
    "AssetKeyPartitionKey",
    "BulkActionsFilter",
    "BulkActionStatus",
    "NOT_FINISHED_STATUSES",
    "partition_loading_context",
    "get_latest_completed_cron_tick",
    "get_next_cron_tick",
]
