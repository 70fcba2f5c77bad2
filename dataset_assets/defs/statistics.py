"""Unigram count vectors per corpus partition, and `corpus_stats`: each corpus against each reference."""


import hashlib
import time
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

from dataset_assets import catalog, settings
from dataset_assets.graph import CRAWL_DOCS, MIXTURES, REPHRASED, SEEDS, crawl_shards, rephrased_partitions
from dataset_assets.progress import Progress
from dataset_assets.shard_runs import ShardResult, each_shard, shard_backfill_policy
from dataset_assets.stats import STATS_SCHEMA, corpus_rows, rows_table
from dataset_assets.stats.corpora import STATS, StaleVectors, gather_corpora, lake_texts, synthetic_quality, top_tokens_markdown
from dataset_assets.stats.divergence import DEFAULT_ALPHA, ZIPF_MAX_RANK, smoothing_note
from dataset_assets.stats.plots import kl_png, png_markdown, zipf_png
from dataset_assets.stats.references import reference_corpus_documents, reference_sources
from dataset_assets.stats.synthetic import markdown_table
from dataset_assets.stats.unigrams import COUNTS_SCHEMA, count_unigrams, counts_batches, counts_metadata
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
            f"no {asset_name} data for partition {dict(partition)} at {lake.uri(*lake.partition_parts(asset_name, partition))}; "
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
    tok = tokenizer.load()
    label = "/".join(partition.values())
    progress = Progress(context.log.info, f"{asset_name} {label}: {unit}", total=total_rows)
    read = [0]
    start = time.perf_counter()
    counted = count_unigrams(
        texts(read),
        tok.encode_batch,
        tok.vocab_size,
        tokenizer.batch_size,
        on_batch=lambda c: progress.update(read[0] or c.documents, f"{c.documents:,} documents, {c.tokens:,} tokens"),
    )
    seconds = time.perf_counter() - start
    meta = counts_metadata(tok.name, tok.vocab_size, tok.fingerprint, counted.documents)
    written = lake.write_partition(asset_name, partition, counts_batches(counted.counts), COUNTS_SCHEMA, meta)
    catalog.record(lake, asset_name, "|".join(partition.values()), written.data_version)
    context.log.info(f"{asset_name} {label}: {counted.documents:,} documents, {counted.tokens:,} tokens in {seconds:.1f} s")
    return MaterializeResult(
        metadata={
            "documents": counted.documents,
            "tokens": counted.tokens,
            "distinct_tokens": counted.types,
            "tokenizer": tok.name,
            "vocab_size": tok.vocab_size,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(counted.tokens / seconds, 1) if seconds > 0 else 0.0,
            "path": MetadataValue.path(lake.uri(*lake.partition_parts(asset_name, partition))),
        },
        # The same counts under another tokenizer are other data.
        data_version=DataVersion(hashlib.sha256(f"{written.data_version}:{tok.fingerprint}".encode()).hexdigest()[:16]),
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


def count_partitions(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource, asset_name: str, upstream: str,
                     dimensions: tuple[str, ...] = ("shard",)) -> MaterializeResult:
    """Every partition of the run (one, or up to BACKFILL_SHARDS_PER_RUN in a backfill run; a key is
    "shard" or "shard|strategy"), each counted, written and recorded as a one-partition run would; a
    run's rate is recomputed, not summed. Only kept rows count, except in crawl_docs (no `kept`)."""

    def one(key: str) -> ShardResult:
        partition = dict(zip(dimensions, str(key).split("|")))
        result = count_lake_partition(context, lake, tokenizer, asset_name, upstream, partition, kept_only=upstream != "crawl_docs")
        return dict(result.metadata), result.data_version.value

    return each_shard(context, lake, one, _run_totals)


def _run_totals(sums: dict, per_shard: dict) -> dict:
    """A many-partition run's rate over the run, its tokenizer once; distinct tokens do not add up
    over partitions, so each partition's count stays in per_shard only."""
    first = next(iter(per_shard.values()))
    totals = {k: v for k, v in sums.items() if k != "distinct_tokens"}
    rate = round(sums["tokens"] / sums["seconds"], 1) if sums["seconds"] > 0 else 0.0
    return {**totals, "tokenizer": first["tokenizer"], "vocab_size": first["vocab_size"], "tokens_per_s": rate}


@asset(partitions_def=crawl_shards, backfill_policy=shard_backfill_policy(), deps=[CRAWL_DOCS],
       description="Token counts of every crawl document of a shard.", **COMMON)
def natural_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    return count_partitions(context, lake, tokenizer, "natural_unigrams", "crawl_docs")


@asset(partitions_def=crawl_shards, backfill_policy=shard_backfill_policy(), deps=[SEEDS],
       description="Token counts of the kept seed documents of a shard.", **COMMON)
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


@asset(partitions_def=references, description="Token counts of one reference corpus (a file or folder of plain text).", **COMMON)
def reference_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    name, directory = context.partition_key, settings.references_dir()
    source = reference_sources(directory).get(name)
    if source is None:
        raise Failure(f"reference {name!r} is not in {directory} any more: restore it or set STATS_REFERENCES (--references)")

    def texts(read: list[int]) -> Iterator[list[str]]:
        batch: list[str] = []
        for doc in reference_corpus_documents(source):
            read[0] += 1
            batch.append(doc)
            if len(batch) >= tokenizer.batch_size:
                yield batch
                batch = []
        yield batch

    return count_and_write(context, lake, tokenizer, "reference_unigrams", {"reference": name}, texts, None, "documents read")


class CorpusStatsConfig(Config):
    smoothing_alpha: float = DEFAULT_ALPHA  # Lidstone pseudo-count per vocabulary id on the corpus side of KL
    top_k: int = 20  # tokens listed per row as the largest contributors to KL


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
    deps=[natural_unigrams, seed_unigrams, rephrased_unigrams, reference_unigrams,
          AssetDep(MIXTURES, partition_mapping=AllPartitionMapping())],
    # Refreshed on its own cadence (a cheap full recompute), not on every upstream partition.
    automation_condition=AutomationCondition.on_cron("0 4 * * *").ignore(AssetSelection.assets(MIXTURES)),
    group_name=GROUP,
    kinds={"parquet"},
    code_version="1",
    description="Tokens, types, entropy, Zipf, KL/JS to each reference, coverage, top KL tokens, support shrinkage; plots.",
)
def corpus_stats(context: AssetExecutionContext, config: CorpusStatsConfig, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    tok = tokenizer.load()
    try:
        corpora = gather_corpora(lake, tok.fingerprint, tok.vocab_size)
    except StaleVectors as exc:
        listed = "; ".join(exc.args[0][:10])
        raise Failure(
            f"{len(exc.args[0])} unigram partitions were counted with another tokenizer than {tok.name} "
            f"(vocab {tok.vocab_size}): {listed}. Rematerialise them with the current `tokenizer` resource, "
            "or point the resource back at the tokenizer they were counted with."
        ) from exc
    if not corpora:
        raise Failure(
            "no unigram counts in the lake: materialise natural_unigrams, seed_unigrams, rephrased_unigrams "
            "or reference_unigrams first"
        )
    refs = [c for c in corpora if c.kind == "reference"]
    rows = corpus_rows(corpora, refs, tok.decode_token, tok.name, config.smoothing_alpha, config.top_k)
    note = smoothing_note(config.smoothing_alpha)
    written = lake.write_partition(STATS, {}, rows_table(rows).to_batches(), STATS_SCHEMA, {"smoothing": note, "tokenizer": tok.name})
    catalog.record(lake, STATS, "", written.data_version)
    zipf = zipf_png({c.name: c.counts for c in corpora}, {c.name: c.kind for c in corpora}, f"Zipf curves ({tok.name} tokens)")
    bars = [(r["corpus"], r["reference"], r["kl_bits"]) for r in rows if r["reference"]]
    kl = kl_png(bars, f"KL(reference || corpus), {tok.name} tokens")
    lake.put_bytes([STATS, "zipf.png"], zipf)
    lake.put_bytes([STATS, "kl.png"], kl)
    quality, quality_plot = synthetic_quality(lake)
    context.log.info(f"corpus_stats: {len(corpora)} corpora x {max(len(refs), 1)} references -> {len(rows)} rows")
    return MaterializeResult(
        metadata={
            "rows": len(rows),
            "corpora": MetadataValue.json({c.name: c.kind for c in corpora}),
            "references": MetadataValue.json([r.name for r in refs]),
            "table": table_metadata(rows),
            "top_kl_tokens": MetadataValue.md(top_tokens_markdown(rows)),
            "zipf_plot": MetadataValue.md(png_markdown("zipf", zipf)),
            "kl_plot": MetadataValue.md(png_markdown("kl", kl)),
            "synthetic_quality": MetadataValue.md(markdown_table(quality["strategies"])),
            "synthetic_quality_plot": MetadataValue.md(png_markdown("quality", quality_plot)),
            "synthetic_quality_by_mixture": MetadataValue.json(quality["mixtures"]),
            "smoothing": note,
            "zipf_fit": f"least squares of log frequency on log rank, ranks 1..min({ZIPF_MAX_RANK}, distinct tokens)",
            "support_shrinkage": "strategy vs kept seeds of the same shards: support_lost = share of the seeds' "
            "distinct tokens absent from the strategy; types_ratio = strategy types / seed types",
            "tokenizer": tok.name,
            "path": MetadataValue.path(lake.uri(STATS, "part-00000.parquet")),
            "plots": MetadataValue.json(
                {"zipf": lake.uri(STATS, "zipf.png"), "kl": lake.uri(STATS, "kl.png"), "quality": lake.uri(STATS, "quality.png")}
            ),
        },
        data_version=DataVersion(written.data_version),
    )
