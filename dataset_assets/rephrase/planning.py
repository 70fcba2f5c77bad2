"""How to cover the missing or outdated (shard, strategy) partitions with few engine loads: rectangles
of shard ranges x strategy ranges, and the tags that ask Dagster for one."""

from __future__ import annotations

from typing import Optional


def rectangles(
    needed: set[tuple[str, str]], shard_order: list[str], strategy_order: list[str]
) -> list[tuple[list[str], list[str]]]:
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
