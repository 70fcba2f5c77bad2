"""The records the status catalog holds, found by walking the lake: what `catalog.rebuild` writes for
a lake that has no catalog (or a damaged one). Slow on purpose and run once: a listing per asset,
a Parquet footer per partition and a manifest per rephrased partition.

The facts here are the ones each stage records when it commits (`facts_*` below are shared with
those stages), so a rebuilt catalog and a catalog grown commit by commit say the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator

from dataset_assets.dedup.minhash import PARAMS_KEY
from dataset_assets.dedup.store import (
    BUCKETS,
    CLUSTERS,
    COVERED_KEY,
    SIGNATURES,
    cluster_fingerprints,
    footer,
    seeds_dedup_fingerprint,
)
from dataset_assets.rephrase.store import ASSET as REPHRASED
from dataset_assets.rephrase.store import MANIFEST, finished_partitions, seeds_fingerprint

STATISTICS = ("natural_unigrams", "seed_unigrams", "rephrased_unigrams", "reference_unigrams", "corpus_stats")


def covered_digest(shards) -> str:
    """A fixed-size stand-in for the sorted list of shards a band partition was built from."""
    return hashlib.sha256("\n".join(sorted(shards)).encode()).hexdigest()[:16]


def facts_buckets(covered: list[str]) -> dict:
    return {"covered": covered_digest(covered), "shards": len(covered)}


def facts_rephrased(manifest: dict) -> dict:
    return {k: manifest.get(k) for k in ("prompt_hash", "generator", "seeds_fingerprint")}


def _row(asset: str, partition: str, **facts) -> dict:
    return {"asset": asset, "partition": partition, "data_version": "", "facts": facts}


def walk_records(lake, log: Callable[[str], None]) -> Iterator[dict]:
    counts: dict[str, int] = {}

    def seen(asset: str) -> None:
        counts[asset] = counts.get(asset, 0) + 1
        if sum(counts.values()) % 1000 == 0:
            log(f"catalog rebuild: {sum(counts.values()):,} partitions found so far ({counts})")

    for asset in ("crawl_docs", SIGNATURES, "seeds"):
        for shard in lake.partition_values(asset, "shard"):
            seen(asset)
            if asset == SIGNATURES:
                params = ((footer(lake, SIGNATURES, {"shard": shard}) or {}).get(PARAMS_KEY.encode(), b"")).decode()
                yield _row(asset, shard, params=params)
            elif asset == "seeds":
                yield _row(
                    asset,
                    shard,
                    kept_fingerprint=seeds_fingerprint(lake, shard),
                    dedup_fingerprint=seeds_dedup_fingerprint(lake, shard),
                )
            else:
                yield _row(asset, shard)
    for band in lake.partition_values(BUCKETS, "band"):
        seen(BUCKETS)
        meta = footer(lake, BUCKETS, {"band": band}) or {}
        yield _row(BUCKETS, band, **facts_buckets(json.loads(meta.get(COVERED_KEY.encode(), b"[]"))))
    fingerprints = cluster_fingerprints(lake)
    if fingerprints is not None:
        seen(CLUSTERS)
        yield _row(CLUSTERS, "", fingerprints=fingerprints)
    for shard, strategy, manifest in finished_partitions(lake):
        seen(REPHRASED)
        yield _row(REPHRASED, f"{shard}|{strategy}", **facts_rephrased(manifest))
    for asset in STATISTICS:
        for keys in (
            lake.stored_partitions(asset) if asset != "corpus_stats" else ([{}] if lake.all_part_files(asset) else [])
        ):
            seen(asset)
            yield _row(asset, "|".join(keys.values()))
    log(f"catalog rebuild: {sum(counts.values()):,} partitions found ({counts})")


def recorded_partition_exists(lake, asset: str, partition: str) -> bool:
    """Whether the data a record describes is still in the lake."""
    if asset == REPHRASED:
        shard, strategy = partition.split("|", 1)
        return lake.exists([REPHRASED, f"shard={shard}", f"strategy={strategy}", MANIFEST])
    if asset == CLUSTERS or asset == "corpus_stats":
        return bool(lake.all_part_files(asset))
    if asset == BUCKETS:
        return lake.has_partition(asset, {"band": partition})
    if asset == "rephrased_unigrams":
        shard, strategy = partition.split("|", 1)
        return lake.has_partition(asset, {"shard": shard, "strategy": strategy})
    if asset == "reference_unigrams":
        return lake.has_partition(asset, {"reference": partition})
    return lake.has_partition(asset, {"shard": partition})
