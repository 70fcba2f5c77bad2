"""Publishing mixture versions: plan every variant of a recipe, sample it, write its shards, manifest
and dataset card under the lake's `_staging/`, and move the version into place whole.

Lake layout under `mixtures/`:
    <name>/v<n>/part-00000.parquet ...   the rows, `shard_rows` per file, shuffled
    <name>/v<n>/README.md                dataset card (front matter for `datasets.load_dataset`)
    <name>/v<n>/manifest.json            written last: a version without it is unfinished
    <name>/latest.json                   {"version": ...}, replaced atomically
    _index/<format>-<tokenizer>/<data version>.parquet   token counts per upstream partition (index.py)
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.fs as pafs

from dataset_assets.mixtures.card import dataset_card
from dataset_assets.mixtures.component_measures import ComponentSampler, component_measures
from dataset_assets.mixtures.index import load_index, token_counter
from dataset_assets.mixtures.pull import CARD, LATEST, MANIFEST, MIXTURES, finished_versions, version_dirs
from dataset_assets.mixtures.recipe import NATURAL, Recipe, UpstreamError
from dataset_assets.mixtures.sampling import (
    CODE_VERSION,
    MIXTURE_SCHEMA,
    mixture_identity,
    mixture_rows,
    sample,
    text_sources,
)
from dataset_assets.mixtures.shards import entry, fixed_size_tables, write_shards
from dataset_assets.mixtures.upstream import Partition, check_availability, files_by_component, upstream_partitions
from resources.lake import STAGING, Lake

__all__ = ["CODE_VERSION", "MIXTURE_SCHEMA", "Published", "build_mixtures"]


@dataclass
class Published:
    name: str
    version: str
    identity: str
    reused: bool
    path: str  # lake location of the version directory
    manifest: dict


def _stats(con) -> dict[str, dict]:
    # A row used k times appears with repeat 0..k-1, so repeat = 0 counts the distinct rows.
    rows = con.execute(
        """
        SELECT component, sum(tokens)::BIGINT, count(*), count(*) FILTER (WHERE repeat = 0), max(repeat) + 1
        FROM picked GROUP BY component ORDER BY component
        """
    ).fetchall()
    return {r[0]: {"tokens": int(r[1]), "rows": r[2], "distinct_rows": r[3], "max_copies": r[4]} for r in rows}


def observe_provenance(tables: Iterator[pa.Table], seen: dict[str, set]) -> Iterator[pa.Table]:
    """Pass tables through, collecting the prompt hashes and generators of the rephrased rows in them."""
    for table in tables:
        for row in table.group_by(["component", "prompt_hash", "generator"]).aggregate([]).to_pylist():
            if row["component"] != NATURAL:
                seen.setdefault(row["component"], set()).add(row["prompt_hash"])
                seen.setdefault("", set()).add(row["generator"])
        yield table


def _clean_unfinished(lake: Lake, name: str, finished: dict[str, dict]) -> None:
    # A version directory without its manifest is debris of an interrupted publish (S3 moves file by file).
    for version in version_dirs(lake, name):
        if version not in finished:
            lake.fs.delete_dir(lake.path(MIXTURES, name, version))


def _move_into_place(lake: Lake, staged: str, final: str, files: list[str]) -> None:
    fs = lake.fs
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        raise FileExistsError(f"{final} appeared while publishing: another build of this mixture runs at the same time")
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        fs.move(staged, final)  # one rename: the version appears whole
        return
    for f in [*files, MANIFEST]:  # the manifest last: until it lands the version reads as unfinished
        fs.move(f"{staged}/{f}", f"{final}/{f}")
    fs.delete_dir(staged)


def _set_latest(lake: Lake, name: str, version: str, identity: str) -> None:
    current = lake.get_json([MIXTURES, name, LATEST]) if lake.exists([MIXTURES, name, LATEST]) else {}
    if current.get("version") != version:
        lake.put_json([MIXTURES, name, LATEST], {"name": name, "version": version, "identity": identity})


@dataclass
class _Inputs:
    """What every variant of one build shares: upstream rows, their token counts and the SQL over them."""

    lake: Lake
    con: object  # DuckDB connection with `mixture_index` registered
    index: pa.Table
    available: dict[str, int]  # tokens per component
    rows: dict[str, int]  # rows per component
    counter: object
    texts_sql: str
    created: str
    excluded: list  # rephrased partitions left out for failing a quality check at ERROR


def _publish_variant(inputs: _Inputs, recipe: Recipe, parts: list[Partition], identity: str) -> Published:
    lake, con, name = inputs.lake, inputs.con, recipe.name
    targets = check_availability(recipe, inputs.available, inputs.rows)
    sample(con, inputs.index, recipe, targets, inputs.available)
    stats = _stats(con)
    finished = finished_versions(lake, name)
    _clean_unfinished(lake, name, finished)
    version = f"v{max((int(v[1:]) for v in finished), default=0) + 1}"
    staging = [STAGING, f"mixture-{uuid.uuid4().hex}"]
    try:
        provenance: dict[str, set] = {}
        sampler = ComponentSampler({label: s["tokens"] for label, s in stats.items()})
        tables = fixed_size_tables(mixture_rows(con, inputs.texts_sql, recipe.shard_rows), recipe.shard_rows)
        files = write_shards(lake, staging, sampler.observe(observe_provenance(tables, provenance)))
        written, picked = sum(f["rows"] for f in files.values()), sum(s["rows"] for s in stats.values())
        if written != picked:
            raise UpstreamError(
                f"mixture {name!r}: {picked:,} rows sampled but {written:,} joined their text: upstream rows share an "
                "id within one shard and component, or upstream files changed during the build"
            )
        manifest = _manifest(inputs, recipe, parts, identity, version, targets, stats, provenance, files)
        manifest["component_measures"] = component_measures(lake, sampler, files_by_component(parts))
        card = dataset_card(manifest).encode()
        lake.put_bytes([*staging, CARD], card)
        files[CARD] = entry(card)
        lake.put_json([*staging, MANIFEST], manifest)  # last: it marks the version finished
        _move_into_place(lake, lake.path(*staging), lake.path(MIXTURES, name, version), sorted(files))
    finally:
        if lake.fs.get_file_info(lake.path(*staging)).type != pafs.FileType.NotFound:
            lake.fs.delete_dir(lake.path(*staging))
    _set_latest(lake, name, version, identity)
    return Published(name, version, identity, False, lake.uri(MIXTURES, name, version), manifest)


def _manifest(inputs: _Inputs, recipe, parts, identity, version, targets, stats, provenance, files) -> dict:
    components = {}
    for c in recipe.components:
        s = stats.get(c.label, {"tokens": 0, "rows": 0, "distinct_rows": 0, "max_copies": 0})
        components[c.label] = {
            "source": c.source,
            "weight": c.weight,
            "target_tokens": targets[c.label],
            **s,
            "available_tokens": inputs.available[c.label],
            "available_rows": inputs.rows[c.label],
            "repetition": s["tokens"] / inputs.available[c.label],  # <= max_repetition; below 1: a subset
        }
    total = sum(c["tokens"] for c in components.values())
    return {
        "name": recipe.name,
        "version": version,
        "identity": identity,
        "recipe": recipe.content(),
        "recipe_file": Path(recipe.path).name if recipe.path else None,
        "variant_of": recipe.variant_of,
        "synthetic_percent": recipe.synthetic_percent,
        "budget_tokens": recipe.budget_tokens,
        "rows": sum(f["rows"] for f in files.values()),
        "tokens": total,
        "components": components,
        "achieved_shares": {k: c["tokens"] / total for k, c in components.items()},
        "repetition": {k: c["repetition"] for k, c in components.items()},
        "upstream": [
            {"asset": p.asset, "partition": p.key(), "data_version": p.data_version, "files": len(p.files)}
            for p in parts
        ],
        "excluded_partitions": [e for e in inputs.excluded if e["partition"]["strategy"] in components],
        "prompt_hashes": {k: sorted(v - {None}) for k, v in sorted(provenance.items()) if k},
        "generator": sorted(provenance.get("", set()) - {None}),
        "tokenizer": {"name": inputs.counter.name, "fingerprint": inputs.counter.fingerprint},
        "code_version": CODE_VERSION,
        "created": inputs.created,
        "schema": [{"name": f.name, "type": str(f.type)} for f in MIXTURE_SCHEMA],
        "files": files,
    }


def build_mixtures(
    lake: Lake, recipe: Recipe, tokenizer=None, log: Optional[Callable[[str], None]] = None
) -> list[Published]:
    """Publish the recipe's mixture and each sweep variant, or reuse the version identical inputs made.

    Every variant's availability is checked before anything is written.
    """
    import duckdb

    log = log or (lambda message: None)
    counter = token_counter(tokenizer)
    excluded: list = []
    parts = upstream_partitions(lake, recipe, excluded)
    for e in excluded:
        log(
            f"{recipe.name}: leaving out rephrased {e['partition']}: failed quality check(s) "
            f"{sorted(e['failed_checks'])} at ERROR"
        )
    plans = []
    for variant in recipe.variants():
        labels = {c.label for c in variant.components}
        used = [p for p in parts if p.component in labels]
        plans.append((variant, used, mixture_identity(variant, used, counter.fingerprint)))

    results: dict[str, Published] = {}
    for variant, _, identity in plans:
        for version, manifest in finished_versions(lake, variant.name).items():
            if manifest["identity"] == identity:
                _set_latest(lake, variant.name, version, identity)
                path = lake.uri(MIXTURES, variant.name, version)
                results[variant.name] = Published(variant.name, version, identity, True, path, manifest)
                log(f"{variant.name}: inputs unchanged since {version} ({identity}); reusing it")
    todo = [p for p in plans if p[0].name not in results]
    if not todo:
        return [results[v.name] for v, _, _ in plans]

    needed = sorted({p for _, used, _ in todo for p in used}, key=lambda p: (p.component, p.shard))
    log(f"{recipe.name}: token counts for {len(needed)} upstream partitions")
    index = load_index(lake, needed, counter)
    with duckdb.connect() as con:
        # A large mixture's sort spills here rather than into a `.tmp` under the working directory.
        con.execute(f"SET temp_directory = '{Path(tempfile.gettempdir()) / 'duckdb-mixtures'}'")
        con.register("mixture_index", index)
        available, rows = {}, {}
        totals = con.execute("SELECT component, sum(tokens)::BIGINT, count(*) FROM mixture_index GROUP BY 1").fetchall()
        for label, tokens, count in totals:
            available[label], rows[label] = int(tokens), count
        for variant, _, _ in todo:
            check_availability(variant, available, rows)  # all variants before the first write
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        inputs = _Inputs(lake, con, index, available, rows, counter, text_sources(con, lake, needed), created, excluded)
        for variant, used, identity in todo:
            log(f"{variant.name}: sampling {variant.budget_tokens:,} tokens")
            results[variant.name] = published = _publish_variant(inputs, variant, used, identity)
            log(f"{variant.name}: published {published.version} ({published.manifest['rows']:,} rows)")
    return [results[v.name] for v, _, _ in plans]
