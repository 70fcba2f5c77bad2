"""Unigram count vectors per corpus partition, and `corpus_stats`: each corpus against each reference."""

from collections.abc import Callable, Iterator, Mapping
from typing import Optional

import numpy as np
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from dataset_assets import settings
from dataset_assets.orchestration.graph import (
    CRAWL_DOCS,
    MIXTURES,
    REPHRASED,
    SEEDS,
    crawl_shards,
    rephrased_partitions,
)
from dataset_assets.orchestration.shard_runs import ShardResult, each_shard, shard_backfill_policy
from dataset_assets.progress import Progress
from dataset_assets.stats import STATS_SCHEMA
from dataset_assets.stats.corpora import STATS, lake_texts, top_tokens_markdown
from dataset_assets.stats.counting import count_into_lake, reference_text_batches, run_totals
from dataset_assets.stats.divergence import DEFAULT_ALPHA
from dataset_assets.stats.diversity import rows_markdown
from dataset_assets.stats.plots import png_markdown
from dataset_assets.stats.references import reference_sources
from dataset_assets.stats.report import NOTES, CorpusReport, NoCounts, StaleVectors, corpus_report
from dataset_assets.stats.synthetic import markdown_table
from dataset_assets.status import catalog
from resources.lake import Lake
from resources.tokenizer import TokenizerResource

GROUP = "statistics"


# Reference corpora (e.g. WikiText-2 test) found when the code location loads: one partition per file
# or folder under STATS_REFERENCES (`dataset-assets run --references DIR`); a new file needs a reload.
references = StaticPartitionsDefinition(sorted(reference_sources(settings.references_dir())))


# -- counting --------------------------------------------------------------------------------------
def require_partition(lake: Lake, asset_name: str, partition: Mapping[str, str]) -> None:
    if not lake.has_partition(asset_name, partition):
        raise Failure(
            f"no {asset_name} data for partition {dict(partition)} at "
            f"{lake.uri(*lake.partition_parts(asset_name, partition))}; "
            f"materialise {asset_name} for it first"
        )


def count_and_write(
    context: AssetExecutionContext,
    lake: Lake,
    tokenizer: TokenizerResource,
    asset_name: str,
    partition: Mapping[str, str],
    texts: Callable[[list[int]], Iterator[list[str]]],
    total_rows: Optional[int],
    unit: str = "rows read",
) -> MaterializeResult:
    label = "/".join(partition.values())
    progress = Progress(context.log.info, f"{asset_name} {label}: {unit}", total=total_rows)
    result = count_into_lake(
        lake, tokenizer.load(), tokenizer.batch_size, asset_name, partition, texts, progress.update
    )
    catalog.record(lake, asset_name, "|".join(partition.values()), result.written.data_version)
    counted = result.counted
    context.log.info(
        f"{asset_name} {label}: {counted.documents:,} documents, {counted.tokens:,} tokens in {result.seconds:.1f} s"
    )
    return MaterializeResult(
        metadata={
            **result.summary(),
            "path": MetadataValue.path(lake.uri(*lake.partition_parts(asset_name, partition))),
        },
        data_version=DataVersion(result.data_version()),
    )


def count_lake_partition(
    context: AssetExecutionContext,
    lake: Lake,
    tokenizer: TokenizerResource,
    asset_name: str,
    upstream: str,
    partition: Mapping[str, str],
    kept_only: bool,
) -> MaterializeResult:
    """Count the `text` of one upstream lake partition (only `kept` rows when asked)."""
    require_partition(lake, upstream, partition)

    def texts(read: list[int]) -> Iterator[list[str]]:
        return lake_texts(lake, upstream, partition, kept_only, read)

    total = lake.partition_rows(upstream, partition)
    return count_and_write(context, lake, tokenizer, asset_name, partition, texts, total)


# Counts follow their upstream partition as soon as it changes; they are cheap and need no GPU. The
# automation sensor submits many partitions as a backfill, whose multi-run policy (on the partitioned
# counts) groups up to BACKFILL_SHARDS_PER_RUN of them per run instead of one run each.
COMMON = dict(group_name=GROUP, kinds={"parquet"}, code_version="1", automation_condition=AutomationCondition.eager())


def count_partitions(
    context: AssetExecutionContext,
    lake: Lake,
    tokenizer: TokenizerResource,
    asset_name: str,
    upstream: str,
    dimensions: tuple[str, ...] = ("shard",),
) -> MaterializeResult:
    """Every partition of the run (one, or up to BACKFILL_SHARDS_PER_RUN in a backfill run; a key is
    "shard" or "shard|strategy"), each counted, written and recorded as a one-partition run would; a
    run's rate is recomputed, not summed. Only kept rows count, except in crawl_docs (no `kept`)."""

    def one(key: str) -> ShardResult:
        partition = dict(zip(dimensions, str(key).split("|")))
        result = count_lake_partition(
            context, lake, tokenizer, asset_name, upstream, partition, kept_only=upstream != "crawl_docs"
        )
        return dict(result.metadata), result.data_version.value

    return each_shard(context, lake, one, run_totals)


@asset(
    partitions_def=crawl_shards,
    backfill_policy=shard_backfill_policy(),
    deps=[CRAWL_DOCS],
    description="Token counts of every crawl document of a shard.",
    **COMMON,
)
def natural_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    return count_partitions(context, lake, tokenizer, "natural_unigrams", "crawl_docs")


@asset(
    partitions_def=crawl_shards,
    backfill_policy=shard_backfill_policy(),
    deps=[SEEDS],
    description="Token counts of the kept seed documents of a shard.",
    **COMMON,
)
def seed_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    return count_partitions(context, lake, tokenizer, "seed_unigrams", "seeds")


@asset(
    partitions_def=rephrased_partitions,
    backfill_policy=shard_backfill_policy(),
    deps=[REPHRASED],
    description="Token counts of the kept rephrased documents of a shard x strategy partition.",
    **COMMON,
)
def rephrased_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    return count_partitions(context, lake, tokenizer, "rephrased_unigrams", "rephrased", ("shard", "strategy"))


@asset(
    partitions_def=references,
    description="Token counts of one reference corpus (a file or folder of plain text).",
    **COMMON,
)
def reference_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    name, directory = context.partition_key, settings.references_dir()
    source = reference_sources(directory).get(name)
    if source is None:
        raise Failure(
            f"reference {name!r} is not in {directory} any more: restore it or set STATS_REFERENCES (--references)"
        )

    def texts(read: list[int]) -> Iterator[list[str]]:
        return reference_text_batches(source, tokenizer.batch_size, read)

    return count_and_write(
        context, lake, tokenizer, "reference_unigrams", {"reference": name}, texts, None, "documents read"
    )


class CorpusStatsConfig(Config):
    smoothing_alpha: float = DEFAULT_ALPHA  # Lidstone pseudo-count per vocabulary id on the corpus side of KL
    top_k: int = 20  # tokens listed per row as the largest contributors to KL
    matched_tokens: Optional[int] = None  # the matched budget; default the smallest compared corpus's tokens
    bootstrap_samples: int = 100  # multinomial token draws per corpus for the matched figures' intervals
    bootstrap_seed: int = 0


def table_metadata(rows: list[dict]) -> MetadataValue:
    shown = [f for f in STATS_SCHEMA if f.name not in ("top_kl_tokens", "tokenizer", "smoothing_alpha")]
    kinds = {"string": "string", "int64": "int", "double": "float"}
    schema = TableSchema(columns=[TableColumn(f.name, kinds.get(str(f.type), "string")) for f in shown])

    def cell(value):
        if isinstance(value, float):
            return round(value, 4) if np.isfinite(value) else None  # NaN: a Zipf fit on under two types
        return value

    records = [TableRecord({f.name: cell(r[f.name]) for f in shown}) for r in rows]
    return MetadataValue.table(records, schema)


@asset(
    # It also reads the unigram counts `mixtures` writes for each published version: an edge of the
    # graph, which the cron condition ignores (mixtures are published when asked, not nightly).
    deps=[
        natural_unigrams,
        seed_unigrams,
        rephrased_unigrams,
        reference_unigrams,
        AssetDep(MIXTURES, partition_mapping=AllPartitionMapping()),
    ],
    # Refreshed on its own cadence (a cheap full recompute), not on every upstream partition.
    automation_condition=AutomationCondition.on_cron("0 4 * * *").ignore(AssetSelection.assets(MIXTURES)),
    group_name=GROUP,
    kinds={"parquet"},
    code_version="1",
    description="Tokens, types, entropy, Zipf, KL/JS to each reference, coverage, top KL tokens, support shrinkage; "
    "plots.",
)
def corpus_stats(
    context: AssetExecutionContext, config: CorpusStatsConfig, lake: Lake, tokenizer: TokenizerResource
) -> MaterializeResult:
    tok = tokenizer.load()
    try:
        report = corpus_report(
            lake,
            tok,
            config.smoothing_alpha,
            config.top_k,
            config.matched_tokens,
            config.bootstrap_samples,
            config.bootstrap_seed,
        )
    except StaleVectors as exc:
        listed = "; ".join(exc.args[0][:10])
        raise Failure(
            f"{len(exc.args[0])} unigram partitions were counted with another tokenizer than {tok.name} "
            f"(vocab {tok.vocab_size}): {listed}. Rematerialise them with the current `tokenizer` resource, "
            "or point the resource back at the tokenizer they were counted with."
        ) from exc
    except NoCounts as exc:
        raise Failure(str(exc)) from exc
    catalog.record(lake, STATS, "", report.written.data_version)
    corpora, refs, rows = report.corpora, report.references, report.rows
    context.log.info(f"corpus_stats: {len(corpora)} corpora x {max(len(refs), 1)} references -> {len(rows)} rows")
    return MaterializeResult(
        metadata=_stats_metadata(lake, report, tok.name), data_version=DataVersion(report.written.data_version)
    )


def _stats_metadata(lake: Lake, report: CorpusReport, tokenizer_name: str) -> dict:
    rows, quality = report.rows, report.quality
    return {
        "rows": len(rows),
        "corpora": MetadataValue.json({c.name: c.kind for c in report.corpora}),
        "references": MetadataValue.json([r.name for r in report.references]),
        "table": table_metadata(rows),
        "top_kl_tokens": MetadataValue.md(top_tokens_markdown(rows)),
        "zipf_plot": MetadataValue.md(png_markdown("zipf", report.zipf)),
        "kl_plot": MetadataValue.md(png_markdown("kl", report.kl)),
        "kl_matched_plot": MetadataValue.md(png_markdown("kl at the matched budget", report.kl_matched)),
        "matched_tokens": report.matched_tokens,
        "synthetic_quality": MetadataValue.md(markdown_table(quality["strategies"])),
        "diversity": MetadataValue.md(rows_markdown(report.diversity) if report.diversity else "(no corpora)"),
        "diversity_plot": MetadataValue.md(
            png_markdown("diversity", report.diversity_plot) if report.diversity_plot else ""
        ),
        "synthetic_quality_plot": MetadataValue.md(png_markdown("quality", report.quality_plot)),
        "synthetic_quality_by_mixture": MetadataValue.json(quality["mixtures"]),
        "smoothing": report.smoothing,
        **NOTES,
        "tokenizer": tokenizer_name,
        "path": MetadataValue.path(lake.uri(STATS, "part-00000.parquet")),
        "plots": MetadataValue.json(
            {
                "zipf": lake.uri(STATS, "zipf.png"),
                "kl": lake.uri(STATS, "kl.png"),
                "kl_matched": lake.uri(STATS, "kl_matched.png"),
                "quality": lake.uri(STATS, "quality.png"),
            }
        ),
    }
