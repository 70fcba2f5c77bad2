"""What the nightly backfill takes, decided without Dagster: the cron slot to act on, and the
partitions that are not current, cut into whole shards up to a limit so a shard's chain of work
completes inside one backfill."""

from __future__ import annotations

from collections import Counter
from typing import Optional

# Assets partitioned by shard (rephrased by "shard|strategy"): a bounded backfill takes whole shards.
SHARD_ASSETS = ("crawl_docs", "dedup_signatures", "seeds", "rephrased")
# Cursor suffix: the slot's work was split and more of it is left for the next backfill.
MORE = "+more"


def shard_of(key: str) -> str:
    return key.split("|", 1)[0]


def backlog(status: dict, limit: Optional[int] = None) -> tuple[list[tuple[str, str]], int]:
    """((asset, partition key) pairs to backfill now, how many are not current in all), from
    `judge.graph_status`. With `limit`, the pairs are every shared partition (dedup bands, clusters)
    plus whole shards in key order up to about `limit` pairs (at least one shard); only the chosen
    pairs are listed, so memory follows the limit, not the graph."""
    shared = [(name, key) for name, st in status.items() if name not in SHARD_ASSETS for key in st.not_current()]
    per_shard = Counter(shard_of(key) for name in SHARD_ASSETS for key in status[name].not_current())
    total = len(shared) + sum(per_shard.values())
    chosen, size = set(), len(shared)
    for shard in sorted(per_shard):
        if limit is not None and chosen and size + per_shard[shard] > limit:
            break
        chosen.add(shard)
        size += per_shard[shard]
    wanted = shared + [
        (name, key) for name in SHARD_ASSETS for key in status[name].not_current() if shard_of(key) in chosen
    ]
    return wanted, total


def slot_to_act_on(latest: float, cursor: Optional[str]) -> tuple[Optional[float], str]:
    """(the cron slot to act on now, or None; the cursor to store), given the latest completed slot.
    The first evaluation only remembers the latest slot, so a new deployment waits for the next one,
    as a schedule would. A slot whose work was split (cursor ending in MORE) is acted on again until
    none is left."""
    if cursor and cursor.endswith(MORE):
        return float(cursor[: -len(MORE)]), cursor[: -len(MORE)]
    if cursor is None or latest <= float(cursor):
        return None, str(latest) if cursor is None else cursor
    return latest, str(latest)
