"""Partitions: crawl shards (dynamic), rephrasing strategies (one per prompt file), their product."""

from __future__ import annotations

from pathlib import Path

from dagster import DynamicPartitionsDefinition, MultiPartitionsDefinition, StaticPartitionsDefinition

from dataset_assets import settings

crawl_shards = DynamicPartitionsDefinition(name="crawl_shards")


def strategy_names(prompts_dir: str | None = None) -> list[str]:
    directory = Path(prompts_dir or settings.prompts_dir())
    return sorted(p.stem for p in directory.glob("*.toml"))


strategies = StaticPartitionsDefinition(strategy_names() or ["continuation"])

# shard x strategy; Dagster writes multi-partition keys as "<shard>|<strategy>".
rephrased_partitions = MultiPartitionsDefinition({"shard": crawl_shards, "strategy": strategies})
