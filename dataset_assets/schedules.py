"""The nightly backfill: one Dagster backfill of exactly the missing and outdated partitions."""

from dagster import AssetKey, DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from dataset_assets import settings
from dataset_assets.backfill import rephrase_needed
from dataset_assets.partitions import crawl_shards, rephrased_partitions
from dataset_assets.strategies import load_strategies
from resources.lake import Lake
from resources.llm import LLMEngine


def needed_partitions(lake: Lake, shards: list[str], engine_generator: str) -> set[AssetKeyPartitionKey]:
    """Shards without documents or seeds, and (shard x strategy) partitions missing or outdated."""
    wanted: set[AssetKeyPartitionKey] = set()
    have_docs = set(lake.partition_values("crawl_docs", "shard"))
    have_seeds = set(lake.partition_values("seeds", "shard"))
    for shard in shards:
        if shard not in have_docs:
            wanted.add(AssetKeyPartitionKey(AssetKey("crawl_docs"), shard))
        if shard not in have_seeds:
            wanted.add(AssetKeyPartitionKey(AssetKey("seeds"), shard))
    pairs, _ = rephrase_needed(lake, load_strategies(settings.prompts_dir()), shards, engine_generator)
    for shard, strategy in pairs:
        key = rephrased_partitions.get_partition_key_from_str(f"{shard}|{strategy}")
        wanted.add(AssetKeyPartitionKey(AssetKey("rephrased"), key))
    return wanted


@schedule(
    cron_schedule="0 2 * * *",
    # A schedule's target must share one partitions definition; the backfill it returns may still
    # name crawl_docs and seeds partitions (asset backfills span partitions definitions).
    target=["rephrased"],
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: backfill missing shards and every rephrased partition that is missing or outdated "
    "(new strategy, edited prompt, new shard, new generator). Single-run backfill policy groups GPU work.",
)
def nightly_backfill(context: ScheduleEvaluationContext, lake: Lake, engine: LLMEngine):
    shards = context.instance.get_dynamic_partitions(crawl_shards.name)
    wanted = needed_partitions(lake, shards, engine.generator)
    if not wanted:
        return SkipReason("every shard and (shard x strategy) partition is current")
    asset_graph = context.repository_def.asset_graph
    subset = AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)
    context.log.info(f"backfilling {len(wanted)} partitions")
    return RunRequest.for_asset_graph_subset(subset, tags={"dagster/from": "nightly_backfill"})
