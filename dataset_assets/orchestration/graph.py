"""What every `defs` module shares: the asset keys and the partition definitions of the graph.

A `defs` module names another stage's asset by its key from here, never by importing that module,
so each stage's Dagster glue stands alone and `load_from_defs_folder` can load them in any order.

Partitions: crawl shards (dynamic), rephrasing strategies (one per prompt file), their product, and
the dedup band groups.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, DynamicPartitionsDefinition, MultiPartitionsDefinition, StaticPartitionsDefinition

from dataset_assets import settings
from dataset_assets.dedup import buckets as bucket_stage
from dataset_assets.dedup.store import BUCKETS, CLUSTERS, SIGNATURES

CRAWL_DOCS = AssetKey("crawl_docs")
DEDUP_SIGNATURES, DEDUP_BUCKETS, DEDUP_CLUSTERS = AssetKey(SIGNATURES), AssetKey(BUCKETS), AssetKey(CLUSTERS)
QUALITY_CLASSIFIER = AssetKey("quality_classifier")
SEEDS = AssetKey("seeds")
REPHRASED = AssetKey("rephrased")
MIXTURES = AssetKey("mixtures")

crawl_shards = DynamicPartitionsDefinition(name="crawl_shards")


def strategy_names(prompts_dir: str | None = None) -> list[str]:
    directory = Path(prompts_dir or settings.prompts_dir())
    return sorted(p.stem for p in directory.glob("*.toml"))


strategies = StaticPartitionsDefinition(strategy_names() or ["continuation"])

# shard x strategy; Dagster writes multi-partition keys as "<shard>|<strategy>".
rephrased_partitions = MultiPartitionsDefinition({"shard": crawl_shards, "strategy": strategies})

# Band partitions: the exact key plus BAND_GROUPS groups of LSH bands (band b in group b % BAND_GROUPS),
# fixed when the definitions load; with the default 14 bands each group is one band.
BAND_GROUPS = 14
dedup_bands = StaticPartitionsDefinition(bucket_stage.partition_names(BAND_GROUPS))
