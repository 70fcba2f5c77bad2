"""What every `defs` module shares: the asset keys and the partition definitions of the graph.

A `defs` module names another stage's asset by its key from here, never by importing that module,
so each stage's Dagster glue stands alone and `load_from_defs_folder` can load them in any order.

Partitions: crawl shards (dynamic), rephrasing strategies (one per prompt file), their product, the
dedup band groups, and for proxy evaluation mixture versions (dynamic) x tokenizers or proxy runs.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, DynamicPartitionsDefinition, MultiPartitionsDefinition, StaticPartitionsDefinition

from dataset_assets import settings
from dataset_assets.dedup import buckets as bucket_stage
from dataset_assets.dedup.store import BUCKETS, CLUSTERS, SIGNATURES

CRAWL_DOCS = AssetKey("crawl_docs")
DEDUP_SIGNATURES, DEDUP_BUCKETS, DEDUP_CLUSTERS = AssetKey(SIGNATURES), AssetKey(BUCKETS), AssetKey(CLUSTERS)
QUALITY_CLASSIFIER = AssetKey("quality_classifier")
SEEDS = AssetKey("seeds")
REPHRASED = AssetKey("rephrased")
MIXTURES = AssetKey("mixtures")

crawl_shards = DynamicPartitionsDefinition(name="crawl_shards")


def strategy_names(prompts_dir: str | None = None) -> list[str]:
    directory = Path(prompts_dir or settings.prompts_dir())
    return sorted(p.stem for p in directory.glob("*.toml"))


strategies = StaticPartitionsDefinition(strategy_names() or ["continuation"])

# shard x strategy; Dagster writes multi-partition keys as "<shard>|<strategy>".
rephrased_partitions = MultiPartitionsDefinition({"shard": crawl_shards, "strategy": strategies})

# Band partitions: the exact key plus BAND_GROUPS groups of LSH bands (band b in group b % BAND_GROUPS),
# fixed when the definitions load; with the default 14 bands each group is one band.
BAND_GROUPS = 14
dedup_bands = StaticPartitionsDefinition(bucket_stage.partition_names(BAND_GROUPS))

# Proxy evaluation: every published mixture version is a partition ("demo@v1", added when `mixtures`
# publishes it or `dataset-assets evaluate` asks for it); a version's tokens are kept per tokenizer,
# and each proxy run is a spec and a seed ("cpu-tiny.s0"), from the spec files when the definitions load.
MIXTURE_TOKENS, PROXY_MODELS = AssetKey("mixture_tokens"), AssetKey("proxy_models")
PROXY_EVALUATIONS, PROXY_LEADERBOARD = AssetKey("proxy_evaluations"), AssetKey("proxy_leaderboard")
mixture_versions = DynamicPartitionsDefinition(name="mixture_versions")


def proxy_specs() -> dict:
    from dataset_assets.proxy.spec import load_specs

    directory = Path(settings.proxy_specs_dir())
    return load_specs(directory) if directory.is_dir() else {}


def proxy_keys(specs: dict, seeds: int) -> list[str]:
    return [f"{name}.s{seed}" for name in sorted(specs) for seed in range(seeds)]


def split_proxy_key(key: str) -> tuple[str, int]:
    name, _, seed = key.rpartition(".s")
    return name, int(seed)


_specs = proxy_specs()


def tokenizer_keys(specs: dict) -> list[str]:
    from dataset_assets.proxy.tokens import tokenizer_key

    return sorted({tokenizer_key(s.tokenizer) for s in specs.values()})


token_partitions = MultiPartitionsDefinition(
    {"version": mixture_versions, "tokenizer": StaticPartitionsDefinition(tokenizer_keys(_specs) or ["bytes"])}
)
proxy_partitions = MultiPartitionsDefinition(
    {
        "version": mixture_versions,
        "proxy": StaticPartitionsDefinition(proxy_keys(_specs, settings.proxy_seeds()) or ["cpu-tiny.s0"]),
    }
)
