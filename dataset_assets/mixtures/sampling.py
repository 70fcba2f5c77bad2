"""Sampling a mixture by tokens in DuckDB: which upstream rows, how many copies, in which order.

Every random choice derives from a row's key (md5 of component, shard and id) and the recipe's
seed, so the same inputs sample the same rows on any machine.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from dataset_assets.mixtures.recipe import NATURAL, Recipe, UpstreamError
from dataset_assets.mixtures.upstream import Partition, files_by_component
from resources.lake import Lake

# Bump when sampling or the row layout changes: every mixture then publishes a new version.
CODE_VERSION = "1"

MIXTURE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # hash of component, shard, source row and repeat: stable across versions
        ("text", pa.string()),
        ("component", pa.string()),  # "natural" or the strategy name
        ("source_id", pa.string()),  # the upstream row the text is: a seeds id or a rephrased id
        ("shard", pa.string()),  # crawl shard
        ("seed_id", pa.string()),  # the seed document behind the row (= source_id for natural rows)
        ("rephrased_id", pa.string()),  # null for natural rows
        ("tokens", pa.int32()),  # in the mixture's tokenizer
        ("repeat", pa.int32()),  # 0 on a row's first use, 1 on its second, ...
        ("prompt_hash", pa.string()),  # of the rephrasing prompt; null for natural rows
        ("generator", pa.string()),  # model and revision that wrote the row; null for natural rows
    ]
)


def mixture_identity(recipe: Recipe, parts: list[Partition], tokenizer_fingerprint: str) -> str:
    """Same recipe, upstream content, tokenizer and code -> same identity -> the existing version is reused."""
    payload = {
        "recipe": recipe.content(),
        "upstream": [[p.asset, p.key(), p.data_version] for p in parts],
        "tokenizer": tokenizer_fingerprint,
        "code_version": CODE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# Random choices come from each row's stable 64-bit key mixed with a salt per purpose, seed and pass,
# so they are cheap integers for DuckDB to sort and identical on every machine.
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def row_key(component: str, shard: str, row_id: str) -> int:
    return int.from_bytes(hashlib.md5(f"{component}|{shard}|{row_id}".encode()).digest()[:8], "big")


def _salt(*parts) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.md5("|".join(map(str, parts)).encode()).digest()[:8], "big"))


def mix64(keys: np.ndarray, salt: np.uint64) -> np.ndarray:
    """splitmix64's finaliser of key XOR salt: well-spread 64-bit values (uint64 arithmetic wraps)."""
    x = keys ^ salt
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def _plan(recipe: Recipe, targets: dict[str, int], available: dict[str, int]) -> list[dict]:
    """Per component: whole passes over its rows, then a partial pass in shuffled order up to the remainder.

    The partial pass takes rows up to the remainder, plus the row that crosses it when that lands
    nearer the target than stopping short, but never goes past max_repetition x available tokens.
    """
    plan = []
    for label, target in targets.items():
        have = available[label]
        full = target // have
        remainder = target - full * have
        cap = int(recipe.max_repetition * have) - full * have
        plan.append(
            {
                "component": label,
                "passes": full + (remainder > 0),
                "full_passes": full,
                "remainder": remainder,
                "last_cap": cap,
            }
        )
    return plan


def expand(index: pa.Table, plan: list[dict], seed: int) -> pa.Table:
    """One row per (index row, pass): `part` numbers the (component, pass) pieces; `order_key` picks
    the rows of a partial pass, `shuffle_key` is the output order, `row_key` the mixture row id (the
    same for every seed and version). mix64 is a bijection, so keys are unique within a component
    exactly when the rows' stable keys are, which is checked here."""
    keys = index.column("key").to_numpy()
    tokens = index.column("tokens").to_numpy()
    pieces = []
    for step in plan:
        rows = np.flatnonzero(pc.equal(index.column("component"), step["component"]).to_numpy(zero_copy_only=False))
        k = keys[rows]
        if len(np.unique(k)) != len(k):
            raise UpstreamError(
                f"component {step['component']!r}: upstream rows share an id within one shard (or their 64-bit keys "
                "collide)"
            )
        n = len(rows)
        for repeat in range(step["passes"]):
            pieces.append(
                pa.table(
                    {
                        "rid": pa.array(rows, pa.int64()),
                        "part": pa.array(np.full(n, len(pieces), np.int32)),
                        "repeat": pa.array(np.full(n, repeat, np.int32)),
                        "whole": pa.array(np.full(n, repeat < step["full_passes"])),
                        "remainder": pa.array(np.full(n, step["remainder"], np.int64)),
                        "last_cap": pa.array(np.full(n, step["last_cap"], np.int64)),
                        "tokens": pa.array(tokens[rows].astype(np.int64)),
                        "order_key": pa.array(mix64(k, _salt(seed, "order", repeat))),
                        "shuffle_key": pa.array(mix64(k, _salt(seed, "shuffle", repeat))),
                        "row_key": pa.array(mix64(k, _salt("row", repeat))),
                    }
                )
            )
    return pa.concat_tables(pieces)


def _sql_list(files: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def text_sources(con, lake: Lake, parts: list[Partition]) -> str:
    """One relation over every kept upstream row the mixture may use: its text and lineage columns."""
    by_component = files_by_component(parts)
    local = isinstance(lake.fs, pafs.LocalFileSystem)
    selects = []
    for i, (label, files) in enumerate(sorted(by_component.items())):
        if not files:
            continue
        if local:
            source = f"read_parquet({_sql_list(files)}, union_by_name = true)"
        else:
            # DuckDB cannot reach S3 here (no httpfs): it scans a pyarrow dataset on the lake's filesystem.
            source = f"mixture_source_{i}"
            con.register(source, pads.dataset(files, filesystem=lake.fs, format="parquet"))
        literal = label.replace("'", "''")
        if label == NATURAL:
            lineage = "id AS seed_id, NULL AS rephrased_id, NULL AS prompt_hash, NULL AS generator"
        else:
            lineage = "source_id AS seed_id, id AS rephrased_id, prompt_hash, generator"
        selects.append(f"SELECT '{literal}' AS component, shard, id, text, {lineage} FROM {source} WHERE kept")
    return " UNION ALL ".join(selects)


def sample(con, index: pa.Table, recipe: Recipe, targets: dict[str, int], available: dict[str, int]) -> None:
    """Create temp table `picked` from `index` (registered as `mixture_index`): the rows (and repeats) to use."""
    con.register("mixture_expanded", expand(index, _plan(recipe, targets, available), recipe.seed))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE picked AS
        WITH ordered AS (
            SELECT *, sum(tokens) OVER (
                PARTITION BY part ORDER BY order_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS cum
            FROM mixture_expanded
        ), chosen AS (
            SELECT rid, repeat, shuffle_key, row_key FROM ordered
            WHERE whole
               OR (cum <= last_cap AND (
                   cum <= remainder OR (cum - tokens < remainder AND cum - remainder <= remainder - (cum - tokens))
               ))
        )
        SELECT i.component, i.shard, i.id, i.tokens, c.repeat, c.shuffle_key, c.row_key
        FROM chosen c JOIN mixture_index i USING (rid)
        """
    )
    con.unregister("mixture_expanded")


def mixture_rows(con, texts_sql: str, batch_rows: int):
    """The picked rows with their text, in the shuffled order."""
    query = f"""
        WITH texts AS ({texts_sql})
        SELECT lpad(lower(to_hex(p.row_key)), 16, '0') AS id, t.text, p.component, p.id AS source_id, p.shard,
               t.seed_id, t.rephrased_id, p.tokens, p.repeat, t.prompt_hash, t.generator
        FROM picked p JOIN texts t ON t.component = p.component AND t.shard = p.shard AND t.id = p.id
        ORDER BY p.shuffle_key, p.row_key
    """
    relation = con.sql(query)
    # DuckDB 2.0 renamed the Arrow reader; pyproject still admits 1.x.
    reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    return reader(batch_rows)
