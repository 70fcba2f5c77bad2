"""How rephrased partitions sit in the lake: the row schema, committed chunk files (their footer holds
the prompt hash, the generator and the inputs' fingerprint), the `_manifest.json` a finished
partition ends with, and each partition's state (missing, outdated and why, current)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_assets.quality.seeds import FINGERPRINT_COLUMNS, KEPT_FINGERPRINT, table_kept_fingerprint
from dataset_assets.rephrase.checks import first_reason
from dataset_assets.rephrase.chunks import ChunkPlan
from dataset_assets.rephrase.partition_checks import prompt_grams, template_duplicates
from dataset_assets.rephrase.strategies import Strategy, prompt_hash

ASSET = "rephrased"
MANIFEST = "_manifest.json"

REPHRASED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source_id", pa.string()),
        ("shard", pa.string()),
        ("strategy", pa.string()),
        ("prompt_hash", pa.string()),
        ("generator", pa.string()),
        ("sampling", pa.string()),
        ("text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("kept", pa.bool_()),
        ("drop_reason", pa.string()),
        ("piece", pa.int32()),
        ("audience", pa.string()),
        ("input_tokens", pa.int32()),
        ("chunk", pa.int32()),
        ("error", pa.string()),
        # Synthetic-text checks (rephrase/checks.py, rephrase/partition_checks.py): every check the row failed,
        # the row a template duplicate was folded into, and what the row checks measured.
        ("flags", pa.list_(pa.string())),
        ("duplicate_of", pa.string()),
        ("repeated_ngram_share", pa.float32()),
        ("compression_ratio", pa.float32()),
        ("copied_share", pa.float32()),
        ("numbers", pa.int32()),
        ("unsupported_numbers", pa.int32()),
        ("source_word_share", pa.float32()),
        ("language_score", pa.float32()),
        # Best of n (the strategy's sampling.n): samples generated for the row at the last step, and the
        # drop reason of each sample that did not become the row (tries, not rows; their tokens are in
        # completion_tokens).
        ("samples", pa.int32()),
        ("try_reasons", pa.list_(pa.string())),
    ]
)
# Columns added after chunks were already committed, with the value an older chunk's rows had.
LATER_COLUMNS = {"samples": 1, "try_reasons": []}
SCORE_COLUMNS = (
    "repeated_ngram_share",
    "compression_ratio",
    "copied_share",
    "numbers",
    "unsupported_numbers",
    "source_word_share",
    "language_score",
)


def chunk_metadata(strategy: Strategy, generator: str, chunk: ChunkPlan) -> dict[str, str]:
    return {"prompt_hash": prompt_hash(strategy), "generator": generator, "fingerprint": chunk.fingerprint}


def committed(lake, directory: str, chunk: ChunkPlan, expected: dict[str, str]) -> Optional[pa.Table]:
    """The committed chunk file if it exists and was made from the same prompt, generator and inputs."""
    path = f"{directory}/{chunk.file_name}"
    try:
        schema = pq.read_schema(path, filesystem=lake.fs)
    except (FileNotFoundError, OSError):
        return None
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    if any(meta.get(k) != v for k, v in expected.items()):
        return None
    table = pq.read_table(path, filesystem=lake.fs)
    if table.schema.names != REPHRASED_SCHEMA.names:
        # Written before a column was added: still the same generation, so it is completed, not redone,
        # and rewritten whole (same footer) so that every file of the partition has one schema.
        rows = [{**LATER_COLUMNS, **row} for row in table.to_pylist()]
        table = pa.Table.from_pylist(rows, schema=REPHRASED_SCHEMA)
        lake.write_parquet(path, table.to_batches(), REPHRASED_SCHEMA, expected)
    return table


def partition_status(
    lake, strategies: dict[str, Strategy], shards: list[str], generator: str
) -> dict[tuple[str, str], str]:
    """What the lake itself says, walking its partitions (the status catalog is held to this in the
    tests, and `catalog.rebuild` reads the same manifests and footers): `missing`, or `outdated` (the
    prompt, the generator or the shard's kept seeds changed since it was made: an edited prompt file,
    another model, a retrained classifier), or `current`."""
    return {pair: state for pair, (state, _) in partition_reasons(lake, strategies, shards, generator).items()}


def partition_reasons(
    lake, strategies: dict[str, Strategy], shards: list[str], generator: str
) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """(state, why) per (shard, strategy): why an outdated partition is outdated (`prompt edited`,
    `new generator`, `seeds changed`, any of them)."""
    done = {(shard, name): manifest for shard, name, manifest in finished_partitions(lake)}
    status = {}
    for shard in shards:
        seeds_now = seeds_fingerprint(lake, shard) if any((shard, name) in done for name in strategies) else None
        for name, strategy in strategies.items():
            manifest = done.get((shard, name))
            if manifest is None:
                status[(shard, name)] = ("missing", [])
                continue
            why = []
            if manifest.get("prompt_hash") != prompt_hash(strategy):
                why.append("prompt edited")
            if manifest.get("generator") != generator:
                why.append("new generator")
            if seeds_now is not None and manifest.get("seeds_fingerprint") != seeds_now:
                why.append("seeds changed")
            status[(shard, name)] = ("outdated" if why else "current", why)
    return status


def seeds_fingerprint(lake, shard: str) -> Optional[str]:
    """The kept-set fingerprint of a shard's seeds partition: from its Parquet footer (one small read)
    or, for files written before the footer held it, from the rows. None if there are no seeds."""
    files = lake.partition_files("seeds", {"shard": shard})
    if not files:
        return None
    if len(files) == 1:
        value = (pq.read_schema(files[0], filesystem=lake.fs).metadata or {}).get(KEPT_FINGERPRINT.encode())
        if value is not None:
            return value.decode()
    return table_kept_fingerprint(lake.read_partition("seeds", {"shard": shard}, columns=FINGERPRINT_COLUMNS))


def finished_partitions(lake) -> Iterator[tuple[str, str, dict]]:
    """(shard, strategy, manifest) of every rephrased partition whose last run completed."""
    for shard_dir in lake.subdirectories(ASSET, prefix="shard="):
        for strategy_dir in lake.subdirectories(ASSET, shard_dir, prefix="strategy="):
            parts = [ASSET, shard_dir, strategy_dir, MANIFEST]
            if lake.exists(parts):
                yield shard_dir[len("shard=") :], strategy_dir[len("strategy=") :], lake.get_json(parts)


ROW_COLUMNS = [
    "id",
    "source_id",
    "text",
    "kept",
    "drop_reason",
    "flags",
    "duplicate_of",
    "completion_tokens",
    "samples",
    "try_reasons",
    *SCORE_COLUMNS,
]


def apply_partition_checks(
    lake, directory: str, tables: list[tuple[ChunkPlan, pa.Table, dict]], strategy: Strategy
) -> list[dict]:
    """Mark template duplicates across every chunk of the partition and rewrite the chunks whose rows
    changed (same footer, so they stay reusable); returns the partition's rows with final verdicts.
    Idempotent: verdicts of an earlier pass are recomputed from the row checks, never stacked."""
    rows_by_chunk = [
        (chunk, table, expected, table.select(ROW_COLUMNS).to_pylist()) for chunk, table, expected in tables
    ]
    candidates = [
        (r["id"], r["source_id"], r["text"])
        for _, _, _, rows in rows_by_chunk
        for r in rows
        if not [f for f in (r["flags"] or []) if f != "template_duplicate"]
    ]
    template = frozenset(prompt_grams(m.content for step in strategy.steps for m in step.messages))
    duplicate_of = template_duplicates(candidates, strategy.checks, template)
    out = []
    for chunk, table, expected, rows in rows_by_chunk:
        changed = False
        for r in rows:
            flags = [f for f in (r["flags"] or []) if f != "template_duplicate"]
            if r["id"] in duplicate_of:
                flags.append("template_duplicate")
            verdict = (not flags, first_reason(flags), duplicate_of.get(r["id"]))
            if verdict != (r["kept"], r["drop_reason"], r["duplicate_of"]) or flags != (r["flags"] or []):
                changed = True
            r["flags"], (r["kept"], r["drop_reason"], r["duplicate_of"]) = flags, verdict
        if changed:
            full = table.to_pylist()
            for row, r in zip(full, rows):
                row.update(
                    flags=r["flags"], kept=r["kept"], drop_reason=r["drop_reason"], duplicate_of=r["duplicate_of"]
                )
            fixed = pa.Table.from_pylist(full, schema=REPHRASED_SCHEMA)
            lake.write_parquet(f"{directory}/{chunk.file_name}", fixed.to_batches(), REPHRASED_SCHEMA, expected)
        out.extend(rows)
    return out
