"""Unigram count vectors per corpus partition, and `corpus_stats`: each corpus against each reference."""


import bz2
import gzip
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
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
from dataset_assets.assets.crawl import crawl_docs
from dataset_assets.assets.seeds import seeds
from dataset_assets.partitions import crawl_shards, rephrased_partitions
from dataset_assets.progress import Progress
from dataset_assets.quality.reference import wikitext_articles
from dataset_assets.stats import STATS_SCHEMA, Corpus, corpus_rows, rows_table
from dataset_assets.stats.divergence import DEFAULT_ALPHA, ZIPF_MAX_RANK, smoothing_note
from dataset_assets.stats.plots import kl_png, png_markdown, zipf_png
from dataset_assets.stats.synthetic import markdown_table, mixture_quality, quality_png, strategy_quality
from dataset_assets.stats.unigrams import COUNTS_SCHEMA, StoredCounts, count_unigrams, counts_batches, counts_from_table, counts_metadata
from resources.lake import Lake
from resources.paths import sanitise_shard_key
from resources.tokenizer import TokenizerResource

GROUP = "statistics"
STATS = "corpus_stats"
MAX_DOCUMENT_CHARS = 1 << 20  # a longer blank-line block is cut at a line boundary; counts are unaffected


# -- reference corpora: one per file or folder in settings.references_dir() ------------------------
def reference_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".txt", ".text", ".raw"):
        name = name.removesuffix(suffix)
    return sanitise_shard_key(name)


def reference_sources(directory: str) -> dict[str, Path]:
    """Partition key -> file or folder. A missing directory means no references, not an error at import."""
    root = Path(directory)
    if not root.is_dir():
        return {}
    entries = sorted(p for p in root.iterdir() if not p.name.startswith((".", "_")))
    return {reference_name(p): p for p in entries}


# Reference corpora (e.g. WikiText-2 test) found when the code location loads: one partition per file
# or folder under STATS_REFERENCES (`dataset-assets run --references DIR`); a new file needs a reload.
references = StaticPartitionsDefinition(sorted(reference_sources(settings.references_dir())))


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def blank_line_documents(lines: Iterator[str], max_chars: int = MAX_DOCUMENT_CHARS) -> Iterator[str]:
    block: list[str] = []
    size = 0
    for line in lines:
        if line.strip():
            block.append(line)
            size += len(line)
        if block and (not line.strip() or size >= max_chars):
            yield "".join(block).strip()
            block, size = [], 0
    if block:
        yield "".join(block).strip()


def reference_documents(path: Path) -> Iterator[str]:
    """Documents of a reference file (or every file of a folder), streamed.

    WikiText files are detokenised into articles (` @-@ `, ` , ` and `<unk>` undone) so the divergence
    measures language, not WikiText's preprocessing; other text splits on blank lines.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    for file in files:
        with _open_text(file) as f:
            yield from (wikitext_articles(f) if "wikitext" in file.name.lower() else blank_line_documents(f))


# -- counting --------------------------------------------------------------------------------------
def lake_texts(lake: Lake, asset_name: str, partition: Mapping[str, str], kept_only: bool, rows_read: list[int]) -> Iterator[list[str]]:
    columns = ["text", "kept"] if kept_only else ["text"]
    for batch in lake.iter_partition_batches(asset_name, partition, columns=columns):
        rows_read[0] += batch.num_rows
        if kept_only:
            batch = batch.filter(pc.fill_null(batch.column("kept"), False))
        yield [t for t in batch.column("text").to_pylist() if t]


def partition_rows(lake: Lake, asset_name: str, partition: Mapping[str, str]) -> int:
    return sum(pq.ParquetFile(lake.fs.open_input_file(f)).metadata.num_rows for f in lake.partition_files(asset_name, partition))


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

    total = partition_rows(lake, upstream, partition)
    return count_and_write(context, lake, tokenizer, asset_name, partition, texts, total)


# Counts follow their upstream partition as soon as it changes; they are cheap and need no GPU.
COMMON = dict(group_name=GROUP, kinds={"parquet"}, code_version="1", automation_condition=AutomationCondition.eager())


@asset(partitions_def=crawl_shards, deps=[crawl_docs], description="Token counts of every crawl document of a shard.", **COMMON)
def natural_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    partition = {"shard": context.partition_key}
    return count_lake_partition(context, lake, tokenizer, "natural_unigrams", "crawl_docs", partition, kept_only=False)


@asset(partitions_def=crawl_shards, deps=[seeds], description="Token counts of the kept seed documents of a shard.", **COMMON)
def seed_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    partition = {"shard": context.partition_key}
    return count_lake_partition(context, lake, tokenizer, "seed_unigrams", "seeds", partition, kept_only=True)


@asset(
    partitions_def=rephrased_partitions,
    deps=[AssetKey("rephrased")],
    description="Token counts of the kept rephrased documents of a shard x strategy partition.",
    **COMMON,
)
def rephrased_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    partition = {"shard": keys["shard"], "strategy": keys["strategy"]}
    return count_lake_partition(context, lake, tokenizer, "rephrased_unigrams", "rephrased", partition, kept_only=True)


@asset(partitions_def=references, description="Token counts of one reference corpus (a file or folder of plain text).", **COMMON)
def reference_unigrams(context: AssetExecutionContext, lake: Lake, tokenizer: TokenizerResource) -> MaterializeResult:
    name, directory = context.partition_key, settings.references_dir()
    source = reference_sources(directory).get(name)
    if source is None:
        raise Failure(f"reference {name!r} is not in {directory} any more: restore it or set STATS_REFERENCES (--references)")

    def texts(read: list[int]) -> Iterator[list[str]]:
        batch: list[str] = []
        for doc in reference_documents(source):
            read[0] += 1
            batch.append(doc)
            if len(batch) >= tokenizer.batch_size:
                yield batch
                batch = []
        yield batch

    return count_and_write(context, lake, tokenizer, "reference_unigrams", {"reference": name}, texts, None, "documents read")


# -- corpus_stats ----------------------------------------------------------------------------------
# How the lake's count vectors become corpora: (unigram asset, kind, corpus name of a partition).
# Another kind of corpus (mixtures) is one more line here and, if derived, one entry in SOURCES.
FAMILIES: list[tuple[str, str, Callable[[Mapping[str, str]], str]]] = [
    ("natural_unigrams", "natural", lambda keys: "natural"),
    ("seed_unigrams", "seeds", lambda keys: "seeds"),
    ("rephrased_unigrams", "strategy", lambda keys: keys["strategy"]),
    ("reference_unigrams", "reference", lambda keys: keys["reference"]),
    # Written by the mixtures asset for every version it publishes.
    ("mixture_unigrams", "mixture", lambda keys: f"{keys['mixture']}@{keys['version']}"),
]
# kind -> the family its support shrinkage is measured against, summed over the same shards.
SOURCES = {"strategy": "seeds"}


class CorpusStatsConfig(Config):
    smoothing_alpha: float = DEFAULT_ALPHA  # Lidstone pseudo-count per vocabulary id on the corpus side of KL
    top_k: int = 20  # tokens listed per row as the largest contributors to KL


def stored_partitions(lake: Lake, asset_name: str) -> list[dict[str, str]]:
    """Hive keys of every partition of an asset holding a finished part file, at any depth."""
    base = lake.path(asset_name)
    infos = lake.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found: dict[tuple, dict[str, str]] = {}
    for info in infos:
        if info.type != pafs.FileType.File or not (info.base_name.startswith("part-") and info.base_name.endswith(".parquet")):
            continue
        directories = info.path[len(base) :].strip("/").split("/")[:-1]
        if directories and all("=" in d for d in directories):
            keys = dict(d.split("=", 1) for d in directories)
            found[tuple(keys.items())] = keys
    return [found[k] for k in sorted(found)]


def stored_vectors(lake: Lake, asset_name: str) -> Iterator[tuple[dict[str, str], StoredCounts]]:
    """Every count vector of an asset with its Hive keys, one at a time."""
    for keys in stored_partitions(lake, asset_name):
        yield keys, counts_from_table(lake.read_partition(asset_name, keys))


class StaleVectors(Exception):
    pass


def gather_corpora(lake: Lake, tokenizer_fingerprint: str, vocab_size: int) -> list[Corpus]:
    """Corpora in FAMILIES order, each the sum of its partitions' vectors; memory O(vocab x corpora)."""
    corpora: dict[tuple[str, str], Corpus] = {}
    stale: list[str] = []
    for asset_name, kind, name_of in FAMILIES:
        for keys, stored in stored_vectors(lake, asset_name):
            if stored.fingerprint != tokenizer_fingerprint or stored.vocab_size != vocab_size:
                stale.append(f"{asset_name} {keys} (tokenizer {stored.tokenizer}, vocab {stored.vocab_size})")
                continue
            name = name_of(keys)
            corpus = corpora.setdefault((kind, name), Corpus(name, kind, np.zeros(vocab_size, dtype=np.int64)))
            corpus.counts += stored.counts.counts
            corpus.documents += stored.counts.documents
            corpus.partitions.append(keys)
    if stale:
        raise StaleVectors(stale)
    ordered = sorted(corpora.values(), key=lambda c: ([k for _, k, _ in FAMILIES].index(c.kind), c.name))
    attach_sources(lake, ordered, vocab_size)
    return ordered


def attach_sources(lake: Lake, corpora: list[Corpus], vocab_size: int) -> None:
    """Give each derived corpus its source summed over exactly the shards it covers."""
    assets = {kind: asset_name for asset_name, kind, _ in FAMILIES}
    summed: dict[tuple[str, frozenset], Corpus] = {}  # strategies usually share one shard set: one pass
    for corpus in corpora:
        source_kind = SOURCES.get(corpus.kind)
        if source_kind is None:
            continue
        shards = frozenset(p["shard"] for p in corpus.partitions)
        if (source_kind, shards) not in summed:
            source = Corpus(source_kind, source_kind, np.zeros(vocab_size, dtype=np.int64))
            for keys, stored in stored_vectors(lake, assets[source_kind]):
                if keys.get("shard") in shards:
                    source.counts += stored.counts.counts
                    source.documents += stored.counts.documents
                    source.partitions.append(keys)
            summed[(source_kind, shards)] = source
        source = summed[(source_kind, shards)]
        if len(source.partitions) == len(shards):  # a shard without source counts would inflate the shrinkage
            corpus.source = source


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


def top_tokens_markdown(rows: list[dict], per_row: int = 5) -> str:
    lines = ["| corpus | reference | tokens most under-represented (p_ref vs p_corpus) |", "|---|---|---|"]
    for r in rows:
        if r["reference"] and r["corpus"] != r["reference"]:
            tops = json.loads(r["top_kl_tokens"])[:per_row]
            cell = ", ".join(f"`{t['token']!r}` ({t['p_ref']:.2%} vs {t['p_corpus']:.2%})" for t in tops)
            lines.append(f"| {r['corpus']} | {r['reference']} | {cell.replace('|', '&#124;')} |")
    return "\n".join(lines)


def synthetic_quality(lake: Lake) -> tuple[dict, bytes]:
    """Per-strategy and per-mixture-version quality of the generated text, from the measures every
    finished rephrased partition wrote (rephrased_unigrams is upstream of this asset, and the
    manifests it reads come with those partitions); written beside the corpus table."""
    from dataset_assets.mixtures.pull import finished_versions, mixture_names
    from dataset_assets.rephrase import finished_partitions

    strategies = strategy_quality(finished_partitions(lake))
    by_strategy = {r["strategy"]: r for r in strategies}
    versions = [(name, v, m) for name in mixture_names(lake) for v, m in finished_versions(lake, name).items()]
    quality = {"strategies": strategies, "mixtures": mixture_quality(versions, by_strategy)}
    plot = quality_png(strategies)
    lake.put_json([STATS, "synthetic_quality.json"], quality)
    lake.put_bytes([STATS, "quality.png"], plot)
    return quality, plot


@asset(
    # It also reads the unigram counts `mixtures` writes for each published version: an edge of the
    # graph, which the cron condition ignores (mixtures are published when asked, not nightly).
    deps=[natural_unigrams, seed_unigrams, rephrased_unigrams, reference_unigrams,
          AssetDep("mixtures", partition_mapping=AllPartitionMapping())],
    # Refreshed on its own cadence (a cheap full recompute), not on every upstream partition.
    automation_condition=AutomationCondition.on_cron("0 4 * * *").ignore(AssetSelection.assets("mixtures")),
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
