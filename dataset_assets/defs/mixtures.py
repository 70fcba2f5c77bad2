"""`mixtures` [recipe]: one recipes/<name>.toml published as an immutable mixture version (and its sweep).

Not automated on upstream changes: a new version is a deliberate act (schedule or CLI).
"""

import hashlib
from pathlib import Path
from typing import Optional

import pyarrow.parquet as pq
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from dataset_assets import settings
from dataset_assets.mixtures.build import CODE_VERSION, build_mixtures
from dataset_assets.mixtures.pull import parquet_files
from dataset_assets.mixtures.recipe import RecipeError, UpstreamError, load_recipe, recipe_names
from dataset_assets.orchestration.graph import REPHRASED, SEEDS, mixture_versions, strategy_names
from dataset_assets.stats.unigrams import (
    COUNTS_SCHEMA,
    DOCUMENTS_SCHEMA,
    count_unigrams,
    counts_batches,
    counts_metadata,
    document_batches,
)
from resources.lake import Lake
from resources.tokenizer import TokenizerResource

# One key per recipe file; MIXTURE_RECIPES (the CLI's --recipes) picks the folder at load time.
mixture_recipes = StaticPartitionsDefinition(recipe_names(settings.recipes_dir()) or ["demo"])


class MixturesConfig(Config):
    recipes_dir: Optional[str] = None  # default MIXTURE_RECIPES or <project>/recipes; files named <partition key>.toml
    prompts_dir: Optional[str] = None  # strategy names a recipe may use; default REPHRASE_PROMPTS or <project>/prompts
    # tokenizer.json (or .tiktoken, model dir) counting tokens; default MIXTURE_TOKENIZER or GPT-2
    tokenizer: Optional[str] = None


def count_version_unigrams(lake: Lake, tokenizer: TokenizerResource, version, log) -> None:
    """Each published version gets its own unigram vector (mixture_unigrams/mixture=<name>/version=<v>/),
    so corpus_stats has a row for it; a reused version keeps the vector it already has."""
    partition = {"mixture": version.name, "version": version.version}
    if lake.has_partition("mixture_unigrams", partition):
        return
    tok = tokenizer.load()
    files = [lake.path("mixtures", version.name, version.version, name) for name in parquet_files(version.manifest)]

    def texts():
        for path in files:
            for batch in pq.ParquetFile(lake.fs.open_input_file(path)).iter_batches(columns=["text"], batch_size=1024):
                yield batch.column("text").to_pylist()

    documents: list = []
    counted = count_unigrams(texts(), tok.encode_batch, tok.vocab_size, tokenizer.batch_size, documents=documents)
    meta = counts_metadata(tok.name, tok.vocab_size, tok.fingerprint, counted.documents)
    lake.write_partition("mixture_unigrams_documents", partition, document_batches(documents), DOCUMENTS_SCHEMA, meta)
    lake.write_partition("mixture_unigrams", partition, counts_batches(counted.counts), COUNTS_SCHEMA, meta)
    log(f"{version.name}@{version.version}: {counted.tokens:,} tokens counted for corpus_stats")


@asset(
    partitions_def=mixture_recipes,
    # Every shard (and strategy) feeds every recipe.
    deps=[
        AssetDep(SEEDS, partition_mapping=AllPartitionMapping()),
        AssetDep(REPHRASED, partition_mapping=AllPartitionMapping()),
    ],
    group_name="mixtures",
    kinds={"duckdb", "parquet"},
    code_version=CODE_VERSION,
    description="A token-weighted, shuffled mix of natural seeds and rephrased text, published as "
    "mixtures/<name>/v<n>/.",
)
def mixtures(
    context: AssetExecutionContext, config: MixturesConfig, lake: Lake, tokenizer: TokenizerResource
) -> MaterializeResult:
    path = Path(config.recipes_dir or settings.recipes_dir()) / f"{context.partition_key}.toml"
    known = strategy_names(config.prompts_dir) or None  # no prompt files: the lake check still catches typos
    try:
        recipe = load_recipe(path, known)
        published = build_mixtures(lake, recipe, config.tokenizer, log=context.log.info)
    except (RecipeError, UpstreamError) as exc:
        raise Failure(description=str(exc), metadata={"recipe": str(path)}) from exc
    for version in published:
        count_version_unigrams(lake, tokenizer, version, context.log.info)
    # Each published version becomes a partition of the proxy evaluation assets.
    keys = [f"{v.name}@{v.version}" for v in published]
    new_keys = [k for k in keys if not context.instance.has_dynamic_partition(mixture_versions.name, k)]
    if new_keys:
        context.instance.add_dynamic_partitions(mixture_versions.name, new_keys)
    main = published[0]
    manifest = main.manifest
    identity = (
        main.identity
        if len(published) == 1
        else hashlib.sha256("|".join(p.identity for p in published).encode()).hexdigest()[:16]
    )
    shares = "\n".join(
        f"| {k} | {c['weight']:.4g} | {manifest['achieved_shares'][k]:.2%} | {c['tokens']:,} | {c['repetition']:.3f} |"
        for k, c in manifest["components"].items()
    )
    return MaterializeResult(
        metadata={
            "version": main.version,
            "reused": main.reused,
            "rows": manifest["rows"],
            "tokens": manifest["tokens"],
            "budget_tokens": recipe.budget_tokens,
            "achieved_shares": MetadataValue.json(manifest["achieved_shares"]),
            "repetition": MetadataValue.json(manifest["repetition"]),
            "components": MetadataValue.md(
                "| component | weight | share | tokens | repetition |\n|---|---|---|---|---|\n" + shares
            ),
            "path": MetadataValue.path(main.path),
            "identity": main.identity,
            "upstream_partitions": len(manifest["upstream"]),
            # Rephrased partitions that failed a quality check at ERROR are never mixed in silently.
            "excluded_partitions": MetadataValue.json(manifest.get("excluded_partitions", [])),
            "variants": MetadataValue.json({p.name: {"version": p.version, "reused": p.reused} for p in published}),
        },
        data_version=DataVersion(identity),
    )
