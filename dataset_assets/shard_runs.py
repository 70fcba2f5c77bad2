"""Per-shard assets run many shards in one run when a backfill asks for many.

A sensor or automation run covers one shard, as before. A backfill groups up to
BACKFILL_SHARDS_PER_RUN shards (Dagster's multi-run backfill policy) into one run, which reads
their files one after another: a first night over 100,000 shard files launches about a thousand
runs instead of a hundred thousand, and the backfill daemon's first iteration stays short. Shared
by the per-shard defs modules, so it lives beside `graph.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from dagster import AssetExecutionContext, BackfillPolicy, DataVersion, Failure, MaterializeResult, MetadataValue

from dataset_assets import settings

# What one shard's work returns: its metadata and its data version.
ShardResult = tuple[dict, str]


def shard_backfill_policy() -> BackfillPolicy:
    return BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill_shards_per_run())


def _plain(metadata: dict) -> dict:
    """The numbers, strings and flags of one shard's metadata (for a run's per-shard table)."""
    return {k: v for k, v in metadata.items() if isinstance(v, (int, float, str, bool))}


def each_shard(context: AssetExecutionContext, one: Callable[[str], ShardResult]) -> MaterializeResult:
    """`one(shard)` for every shard of the run. One shard: its own result, exactly as before. A
    range: every shard is tried (a bad file does not stop the shards after it, whose data and
    status records are committed), the metadata sums the counts and lists each shard, and the run
    fails at the end naming the shards that failed."""
    shards = list(context.partition_keys)
    if len(shards) == 1:
        metadata, version = one(shards[0])
        return MaterializeResult(metadata=metadata, data_version=DataVersion(version))
    done: dict[str, ShardResult] = {}
    failed: dict[str, str] = {}
    for n, shard in enumerate(shards, 1):
        try:
            done[shard] = one(shard)
        except Exception as exc:  # noqa: BLE001 - named at the end, after the other shards ran
            failed[shard] = (getattr(exc, "description", None) or str(exc)).splitlines()[0][:300]
            context.log.error(f"{shard} ({n}/{len(shards)}) failed: {failed[shard]}")
        else:
            context.log.info(f"{shard} done ({n}/{len(shards)})")
    if failed:
        raise Failure(
            description=f"{len(failed)} of {len(shards)} shards failed ({', '.join(list(failed)[:5])}); "
            f"the other {len(done)} are committed and recorded",
            metadata={"failed": MetadataValue.json(failed), "committed": len(done)},
        )
    per_shard = {shard: _plain(metadata) for shard, (metadata, _) in done.items()}
    totals: dict = {}
    for row in per_shard.values():
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    version = hashlib.sha256("|".join(f"{s}:{v}" for s, (_, v) in sorted(done.items())).encode()).hexdigest()[:16]
    return MaterializeResult(
        metadata={**totals, "shards": len(shards), "per_shard": MetadataValue.json(per_shard)},
        data_version=DataVersion(version),
    )
