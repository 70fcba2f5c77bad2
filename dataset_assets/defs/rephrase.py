"""`rephrased` [shard x strategy]: kept seeds rewritten by one strategy through the LLM engine.

One run may cover many partitions (single-run backfills); the engine then loads once for all.
"""

import hashlib
import time
from typing import Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    MultiPartitionKey,
    MultiToSingleDimensionPartitionMapping,
    asset,
)

from dataset_assets import settings
from dataset_assets.orchestration.graph import SEEDS, rephrased_partitions
from dataset_assets.progress import Progress
from dataset_assets.rephrase.chunks import with_output_cap
from dataset_assets.rephrase.generate import PartitionStats, rephrase_partition
from dataset_assets.rephrase.store import ASSET
from dataset_assets.rephrase.strategies import load_strategies
from dataset_assets.status import batches, catalog
from dataset_assets.status.lake_walk import facts_rephrased
from resources.lake import Lake
from resources.llm import LLMEngine

SEED_COLUMNS = ["id", "text", "kept", "quality_percentile", "lang"]
# Partition checks of the generated text (thresholds per strategy in its [checks] table). A run that
# covers many partitions reports each check once, at the worst severity any partition reached, with
# every partition's value in the metadata; the per-partition verdicts live in each _manifest.json,
# which is what `mixtures` reads to leave an ERROR partition out.
QUALITY_CHECKS = {
    "kept_share": "share of rows that passed every check (WARN/ERROR below the strategy's levels)",
    "template_duplicate_share": "share of rows that are template near-duplicates of another source's output",
    "repetition_share": "share of rows dropped or flagged for loops and stutter",
}


class RephrasedConfig(Config):
    chunk_docs: int = 64  # documents per committed chunk (the unit of resume); >= max_num_seqs keeps batches full
    gpu_hour_price: float = 2.5  # USD per GPU-hour, for the cost-per-billion-tokens estimate
    prompts_dir: Optional[str] = None  # default REPHRASE_PROMPTS or <project>/prompts
    max_output_tokens: Optional[int] = None  # caps every strategy's output limit (CPU demos); part of the prompt hash


def split_key(key) -> tuple[str, str]:
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        shard, strategy = str(key).split("|")
        dims = {"shard": shard, "strategy": strategy}
    return dims["shard"], dims["strategy"]


def cost_per_billion(engine_seconds: float, completion_tokens: int, gpu_hour_price: float) -> float:
    if completion_tokens == 0:
        return 0.0
    return engine_seconds / 3600 * gpu_hour_price * 1e9 / completion_tokens


@asset(
    partitions_def=rephrased_partitions,
    deps=[AssetDep(SEEDS, partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="shard"))],
    backfill_policy=BackfillPolicy.single_run(),
    # A new shard's seeds flow on to every strategy without anyone clicking; never twice at once.
    automation_condition=AutomationCondition.eager(),
    pool="gpu",
    group_name="rephrase",
    kinds={"vllm", "parquet"},
    code_version="1",
    op_tags={"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}},
    description="Kept seeds of one shard rewritten with one strategy (prompts/<strategy>.toml), chunked and resumable.",
    check_specs=[AssetCheckSpec(name, asset="rephrased", description=text) for name, text in QUALITY_CHECKS.items()],
)
def rephrased(
    context: AssetExecutionContext, config: RephrasedConfig, lake: Lake, engine: LLMEngine
) -> MaterializeResult:
    strategies = load_strategies(config.prompts_dir or settings.prompts_dir())
    # A batch partition's key stands for its files (status/batches.py): each (file, strategy) is rephrased,
    # committed and recorded on its own, one after another.
    requested = [split_key(k) for k in context.partition_keys]
    registry = batches.for_keys(lake, [shard for shard, _ in requested])
    keys = sorted((f, name) for shard, name in requested for f in registry.files(shard))
    per_partition: dict[str, dict] = {}
    checks_by_partition: dict[str, dict] = {}
    total = PartitionStats()
    start = time.monotonic()
    for n, (shard, name) in enumerate(keys, 1):
        if name not in strategies:
            raise ValueError(f"strategy {name!r} has no prompt file in {config.prompts_dir or settings.prompts_dir()}")
        strategy = with_output_cap(strategies[name], config.max_output_tokens)
        label = f"{shard}|{name}"
        per_partition[label], stats = _rephrase_one(
            context, config, lake, engine, strategy, shard, f"{label} ({n}/{len(keys)})"
        )
        checks_by_partition[label] = stats.checks
        _add(total, stats)
    metadata = _run_metadata(config, lake, engine, total, per_partition, len(keys), time.monotonic() - start)
    version = "|".join(
        f"{k}:{v['rows']}:{v['kept']}:{v['completion_tokens']}" for k, v in sorted(per_partition.items())
    )
    return MaterializeResult(
        metadata=metadata,
        data_version=DataVersion(hashlib.sha256(version.encode()).hexdigest()[:16]),
        check_results=check_results(checks_by_partition),
    )


def _rephrase_one(
    context, config: RephrasedConfig, lake: Lake, engine: LLMEngine, strategy, shard: str, label: str
) -> tuple[dict, PartitionStats]:
    """One (shard x strategy) partition, with progress; (its metadata entry, its stats)."""
    # Only kept seeds are rephrased and fingerprinted: the dropped ~90% never become Python dicts.
    seeds_table = lake.read_partition("seeds", {"shard": shard}, columns=SEED_COLUMNS)
    seed_rows = seeds_table.filter(seeds_table.column("kept")).to_pylist()
    progress = Progress(context.log.info, f"{label}: chunks", every_s=10)

    def on_chunk(stats: PartitionStats, done: int, count: int) -> None:
        progress.total = count
        elapsed = max(time.monotonic() - progress.start, 1e-9)
        progress.update(
            done,
            f"{stats.rows_done} rows, {stats.completion_tokens:,} output tokens, "
            f"{stats.completion_tokens / elapsed:,.0f} tokens/s, {stats.chunks_reused} chunks reused",
        )

    engine_before = engine.busy_seconds
    stats = rephrase_partition(lake, engine, strategy, shard, seed_rows, config.chunk_docs, on_chunk)
    catalog.record(lake, ASSET, f"{shard}|{strategy.name}", **facts_rephrased(stats.manifest))  # after its manifest
    engine_seconds = engine.busy_seconds - engine_before
    context.log.info(
        f"{shard}|{strategy.name}: {stats.rows} rows, {stats.kept} kept, drops {dict(stats.drops)}, "
        f"{stats.chunks_generated} chunks generated, {stats.chunks_reused} reused"
    )
    entry = {
        "rows": stats.rows,
        "kept": stats.kept,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "engine_seconds": round(engine_seconds, 2),
        "chunks_generated": stats.chunks_generated,
        "chunks_reused": stats.chunks_reused,
        "drops": dict(stats.drops),
        "samples": stats.generated_samples,
        "rescued": stats.rescued,
        "quality": stats.quality,
        "checks": {k: v["severity"] for k, v in stats.checks.items()},
    }
    return entry, stats


def _run_metadata(
    config: RephrasedConfig,
    lake: Lake,
    engine: LLMEngine,
    total: PartitionStats,
    per_partition: dict,
    partitions: int,
    wall: float,
) -> dict:
    engine_seconds = engine.busy_seconds
    samples = "\n\n---\n\n".join(f"```\n{s}\n```" for s in total.samples[:3]) or "(no kept rows)"
    return {
        "partitions": partitions,
        "rows": total.rows,
        "kept": total.kept,
        "drop_counts": MetadataValue.json(dict(total.drops)),
        # best of n: samples generated, kept rows that a later sample rescued, why the tries were rejected
        "samples_generated": total.generated_samples,
        "rescued_by_later_sample": total.rescued,
        "try_drop_counts": MetadataValue.json(dict(total.try_drops)),
        "completion_tokens_per_kept_row": round(total.completion_tokens / total.kept, 1) if total.kept else None,
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "engine_seconds": round(engine_seconds, 2),
        "wall_seconds": round(wall, 2),
        "output_tokens_per_s": round(total.completion_tokens / engine_seconds, 1) if engine_seconds else 0.0,
        "gpu_hour_price_usd": config.gpu_hour_price,
        "usd_per_billion_output_tokens": round(
            cost_per_billion(engine_seconds, total.completion_tokens, config.gpu_hour_price), 2
        ),
        "engine_requests": total.requests,
        "chunks_generated": total.chunks_generated,
        "chunks_reused": total.chunks_reused,
        "generator": engine.generator,
        "engine_loads": getattr(engine, "loads", 0),
        "per_partition": MetadataValue.json(per_partition),
        "samples": MetadataValue.md(samples),
        "dropped_samples": MetadataValue.md(dropped_markdown(total.dropped_samples)),
        "quality": MetadataValue.json({k: v["quality"] for k, v in per_partition.items()}),
        "path": MetadataValue.path(lake.uri(ASSET)),
    }


def check_results(checks_by_partition: dict[str, dict]) -> list[AssetCheckResult]:
    """One result per quality check: failed at the worst severity any partition of the run reached."""
    results = []
    for name in QUALITY_CHECKS:
        verdicts = {key: checks[name] for key, checks in checks_by_partition.items()}
        severities = {v["severity"] for v in verdicts.values()}
        worst = "error" if "error" in severities else "warn" if "warn" in severities else "ok"
        failing = sorted(k for k, v in verdicts.items() if v["severity"] != "ok")
        results.append(
            AssetCheckResult(
                check_name=name,
                passed=worst == "ok",
                severity=AssetCheckSeverity.ERROR if worst == "error" else AssetCheckSeverity.WARN,
                metadata={
                    "partitions": len(verdicts),
                    "failing": MetadataValue.json({k: verdicts[k] for k in failing}),
                    "values": MetadataValue.json({k: v["value"] for k, v in sorted(verdicts.items())}),
                },
            )
        )
    return results


def dropped_markdown(samples: dict[str, list[str]]) -> str:
    if not samples:
        return "(nothing dropped)"
    return "\n\n".join(
        f"**{reason}**\n\n" + "\n\n".join(f"```\n{t}\n```" for t in texts) for reason, texts in sorted(samples.items())
    )


def _add(total: PartitionStats, stats: PartitionStats) -> None:
    total.rows += stats.rows
    total.kept += stats.kept
    total.prompt_tokens += stats.prompt_tokens
    total.completion_tokens += stats.completion_tokens
    total.drops.update(stats.drops)
    total.generated_samples += stats.generated_samples
    total.try_drops.update(stats.try_drops)
    total.rescued += stats.rescued
    total.chunks_generated += stats.chunks_generated
    total.chunks_reused += stats.chunks_reused
    total.requests += stats.requests
    total.samples.extend(stats.samples[: 3 - len(total.samples)])
    for reason, texts in stats.dropped_samples.items():
        room = 2 - len(total.dropped_samples.setdefault(reason, []))
        total.dropped_samples[reason].extend(texts[: max(room, 0)])
