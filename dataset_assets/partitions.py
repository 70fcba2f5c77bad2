"""Partitions: one key per crawl shard file, added by the landing sensor or the CLI."""

from dagster import DynamicPartitionsDefinition

crawl_shards = DynamicPartitionsDefinition(name="crawl_shards")
