"""Per-shard assets run many shards in one run when a backfill asks for many.

A landing or automation run covers one shard, as before; the dedup seeds sensor asks for runs of
consecutive shards (`shard_groups`, `shard_run_request`). A backfill groups up to
BACKFILL_SHARDS_PER_RUN shards (Dagster's multi-run backfill policy) into one run, which reads
their files one after another: a first night over 100,000 shard files launches about a thousand
runs instead of a hundred thousand, and the backfill daemon's first iteration stays short. Shared
by the per-shard defs modules, so it lives beside `graph.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Optional

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
)

from dataset_assets import settings
from dataset_assets.orchestration.in_flight import RANGE_END, RANGE_START
from dataset_assets.status import batches

# What one shard's work returns: its metadata and its data version.
ShardResult = tuple[dict, str]


def shard_backfill_policy() -> BackfillPolicy:
    return BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill_shards_per_run())


def _plain(metadata: dict) -> dict:
    """The numbers, strings and flags of one shard's metadata (for a run's per-shard table)."""
    return {k: v for k, v in metadata.items() if isinstance(v, (int, float, str, bool))}


def each_shard(
    context: AssetExecutionContext,
    lake,
    one: Callable[[str], ShardResult],
    run_totals: Optional[Callable[[dict, dict], dict]] = None,
) -> MaterializeResult:
    """`one(shard)` for every shard file of the run's partitions (a batch partition is its files,
    `status/batches.py`). One file: its own result, exactly as before. Several: every file is tried (a bad
    file does not stop the files after it, whose data and status records are committed), the
    metadata sums the counts and lists each file, and the run fails at the end naming the files
    that failed. Numbers that do not add up over files (shares, means, rates) are set by
    `run_totals(sums, per_shard)`, which returns the run's totals."""
    registry = batches.for_keys(lake, context.partition_keys)
    shards = [f for key in context.partition_keys for f in registry.expand(key)]
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
    if run_totals is not None:
        totals = run_totals(totals, per_shard)
    version = hashlib.sha256("|".join(f"{s}:{v}" for s, (_, v) in sorted(done.items())).encode()).hexdigest()[:16]
    return MaterializeResult(
        metadata={**totals, "shards": len(shards), "per_shard": MetadataValue.json(per_shard)},
        data_version=DataVersion(version),
    )


def shard_groups(order: list[str], wanted: set[str], per_run: int) -> list[list[str]]:
    """The wanted shards as runs of consecutive keys in partition order (what one range run covers,
    nothing between), at most `per_run` each."""
    groups: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in wanted and len(current) < per_run:
            current.append(key)
            continue
        if current:
            groups.append(current)
        current = [key] if key in wanted else []
    if current:
        groups.append(current)
    return groups


def first_groups(groups: list[list[str]], room: int) -> list[list[str]]:
    """The leading groups that hold at most `room` shards together (at least the first group)."""
    chosen: list[list[str]] = []
    for group in groups:
        if chosen and len(group) > room:
            break
        chosen.append(group)
        room -= len(group)
    return chosen


def shard_run_request(shards: list[str], origin: str, versions: dict[str, str]) -> RunRequest:
    """A sensor's request for consecutive shards: one shard, a partition run; several, one range run
    (a model loads once). The run key names the shards' versions, so the same work is never launched twice."""
    if len(shards) == 1:
        return RunRequest(partition_key=shards[0], run_key=f"{origin}:{shards[0]}:{versions.get(shards[0], '')}")
    digest = hashlib.sha256("|".join(f"{s}:{versions.get(s, '')}" for s in shards).encode()).hexdigest()[:16]
    return RunRequest(
        run_key=f"{origin}:{shards[0]}..{shards[-1]}:{digest}", tags={RANGE_START: shards[0], RANGE_END: shards[-1]}
    )
