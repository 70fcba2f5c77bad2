"""The seeds and rephrased partitions a recipe reads, each with a content version of its part files."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from dataset_assets.mixtures.pull import file_sha256
from dataset_assets.mixtures.recipe import NATURAL, Recipe, RecipeError, UpstreamError
from resources.lake import Lake

# The rephrased asset writes this file last in each partition (dataset_assets/rephrase/generate.py):
# part files without it belong to a run that has not finished.
REPHRASED_FINISHED = "_manifest.json"


@dataclass(frozen=True)
class Partition:
    asset: str
    shard: str
    strategy: Optional[str]
    files: tuple[str, ...]
    data_version: str  # content hash of the partition's part files

    @property
    def component(self) -> str:
        return self.strategy or NATURAL

    def key(self) -> dict[str, str]:
        return {"shard": self.shard, **({"strategy": self.strategy} if self.strategy else {})}


def files_by_component(parts: list[Partition]) -> dict[str, list[str]]:
    """Every upstream file of each component (`natural` or the strategy)."""
    out: dict[str, list[str]] = {}
    for p in parts:
        out.setdefault(p.component, []).extend(p.files)
    return out


def partition_version(lake: Lake, asset: str, key: dict[str, str], files: list[str]) -> str:
    h = hashlib.sha256(json.dumps([asset, key], sort_keys=True).encode())
    for f in files:
        h.update(f"{f.rsplit('/', 1)[-1]}\x00{file_sha256(lake.fs, f)[0]}\n".encode())
    return h.hexdigest()[:16]


def failed_quality_checks(manifest: dict) -> dict[str, dict]:
    """The partition checks a finished rephrased partition failed at ERROR (from its _manifest.json)."""
    return {
        name: verdict for name, verdict in (manifest.get("checks") or {}).items() if verdict.get("severity") == "error"
    }


def upstream_partitions(lake: Lake, recipe: Recipe, excluded: Optional[list] = None) -> list[Partition]:
    """The seeds and rephrased partitions a recipe reads, with content versions; every gap is an error.

    A finished rephrased partition that failed a quality check at ERROR is left out, never silently:
    it is appended to `excluded` with the checks it failed, for the manifest and the run's metadata."""
    rephrased = sorted(c.strategy for c in recipe.components if c.strategy)
    seeds_shards = set(lake.partition_values("seeds", "shard"))
    if recipe.shards is not None:
        shards = list(recipe.shards)
    else:
        shards = sorted(seeds_shards | set(lake.partition_values("crawl_docs", "shard")))
    if not shards:
        raise UpstreamError(
            f"mixture {recipe.name!r}: the lake at {lake.uri()} holds no seeds: materialise crawl_docs and seeds first"
        )
    missing, found = [], []
    for shard in shards:
        if shard not in seeds_shards:
            missing.append(f"seeds shard={shard}")
        elif any(c.label == NATURAL for c in recipe.components):
            found.append(("seeds", {"shard": shard}))
        for strategy in rephrased:
            key = {"shard": shard, "strategy": strategy}
            finished = [*lake.partition_parts("rephrased", key), REPHRASED_FINISHED]
            if lake.exists(finished):
                failed = failed_quality_checks(lake.get_json(finished))
                if failed:
                    if excluded is not None:
                        excluded.append({"partition": key, "failed_checks": failed})
                else:
                    found.append(("rephrased", key))
            elif lake.has_partition("rephrased", key):
                missing.append(f"rephrased shard={shard} strategy={strategy} (unfinished: no {REPHRASED_FINISHED})")
            else:
                missing.append(f"rephrased shard={shard} strategy={strategy}")
    if missing:
        shown = "; ".join(missing[:12]) + (f"; and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise UpstreamError(
            f"{recipe.path or recipe.name}: mixture {recipe.name!r} needs {len(missing)} upstream partition(s) that "
            f"{lake.uri()} does not hold: {shown}. Materialise them, or list the shards to use in the recipe's "
            "`shards` field."
        )

    def version(found_one) -> Partition:
        asset, key = found_one
        files = lake.partition_files(asset, key)
        return Partition(
            asset, key["shard"], key.get("strategy"), tuple(files), partition_version(lake, asset, key, files)
        )

    # Hashing is I/O and sha256, both of which release the GIL: two threads hash two partitions at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(version, found))


def check_availability(recipe: Recipe, available: Mapping[str, int], rows: Mapping[str, int]) -> dict[str, int]:
    """Target tokens per component; raises naming every component the lake cannot supply in time."""
    problems = []
    targets = recipe.targets()
    if not any(targets.values()):
        where = recipe.path or recipe.name
        raise RecipeError(
            f"{where}: field `budget_tokens`: {recipe.budget_tokens} tokens give no component a whole token"
        )
    for label, needed in targets.items():
        have = available.get(label, 0)
        if rows.get(label, 0) == 0 or have == 0:
            problems.append(f"component {label!r} is empty: no kept rows upstream (needs {needed:,} tokens)")
        elif needed > recipe.max_repetition * have:
            problems.append(
                f"component {label!r} needs {needed:,} tokens but has {have:,} available "
                f"({math.floor(recipe.max_repetition * have):,} with max_repetition {recipe.max_repetition:g}, "
                f"{needed / have:.2f}x would be needed)"
            )
    if problems:
        raise RecipeError(
            f"{recipe.path or recipe.name}: mixture {recipe.name!r} (budget_tokens {recipe.budget_tokens:,}) cannot "
            "be met: "
            + "; ".join(problems)
            + ". Lower budget_tokens, raise max_repetition, or materialise more upstream data."
        )
    return targets
