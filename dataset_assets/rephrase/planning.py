"""Which partitions are missing or outdated, and how to cover them with few engine loads."""

from __future__ import annotations

from typing import Optional

from dataset_assets.rephrase.strategies import Strategy


def rectangles(needed: set[tuple[str, str]], shard_order: list[str], strategy_order: list[str]) -> list[tuple[list[str], list[str]]]:
    """Cover the needed (shard, strategy) pairs exactly with few shard-range x strategy-range blocks.

    Dagster runs a multi-partition range as a rectangle in each dimension's own order, and one run
    loads the engine once, so fewer, larger rectangles mean fewer model loads.
    """
    runs_by_strategy: dict[str, tuple[tuple[int, int], ...]] = {}
    for strategy in strategy_order:
        idx = [i for i, shard in enumerate(shard_order) if (shard, strategy) in needed]
        spans, start = [], None
        for j, i in enumerate(idx):
            if start is None:
                start = i
            if j + 1 == len(idx) or idx[j + 1] != i + 1:
                spans.append((start, i))
                start = None
        if spans:
            runs_by_strategy[strategy] = tuple(spans)
    blocks: list[tuple[list[str], list[str]]] = []
    previous: Optional[tuple] = None
    for strategy in strategy_order:
        spans = runs_by_strategy.get(strategy)
        if spans and spans == previous:
            for block in blocks[-len(spans) :]:
                block[1].append(strategy)
        elif spans:
            blocks.extend(([*shard_order[a : b + 1]], [strategy]) for a, b in spans)
        previous = spans
    return blocks


def range_tags(shards: list[str], strategies: list[str]) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": f"{shards[0]}|{strategies[0]}",
        "dagster/asset_partition_range_end": f"{shards[-1]}|{strategies[-1]}",
    }


def rephrase_needed(
    lake, strategies: dict[str, Strategy], shards: list[str], generator: str, max_output_tokens: Optional[int] = None
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """(shard, strategy) pairs that are missing or outdated, and the summary of all pairs: the status
    catalog's answer, exactly what `dataset-assets status` and the nightly backfill see."""
    from dataset_assets.status import graph_status

    rephrased = graph_status(lake, shards, strategies, generator, [], max_output_tokens)["rephrased"]
    return {tuple(key.split("|", 1)) for key in rephrased.not_current()}, rephrased.summary(sample=0)
