"""Stage 2, per LSH band (or the exact key): candidate groups from bucket collisions.

A band partition reads one key column of every shard's signature file, never whole signatures, and
writes the members of every bucket that holds more than one document, each with the bucket's
smallest id as its `root`. Stars to the root connect a bucket as well as all its pairs would,
so a bucket of n documents costs n rows, not n^2 (one giant boilerplate bucket stays linear).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset_assets.dedup.minhash import MinHashParams
from dataset_assets.dedup.signatures import band_column

EXACT = "exact"
MEMBER_SCHEMA = pa.schema(
    [
        ("band", pa.string()),  # "exact" or the band column, e.g. "band_03"
        ("root", pa.string()),  # the bucket's smallest id: which bucket this row belongs to
        ("id", pa.string()),
        ("shard", pa.string()),
        ("url", pa.string()),
        ("date", pa.string()),
        ("exact_key", pa.string()),
        ("shingles", pa.int32()),
    ]
)
ATTRIBUTES = ["id", "shard", "url", "date", "exact_key", "shingles"]


def partition_names(band_groups: int) -> list[str]:
    """The band partitions: the exact key, then `band_groups` groups of LSH bands."""
    return [EXACT] + [f"near-{g:02d}" for g in range(band_groups)]


def key_columns(partition: str, params: MinHashParams, band_groups: int) -> list[str]:
    """Which signature columns a band partition groups on: near-g holds bands b with b % groups == g."""
    if partition == EXACT:
        return ["exact_key"]
    group = int(partition.split("-", 1)[1])
    return [band_column(b) for b in range(params.bands) if b % band_groups == group]


def bucket_members(table: pa.Table, key: str, band: str) -> pa.Table:
    """Members of every bucket of `key` holding two or more documents, rooted at its smallest id."""
    table = table.filter(pc.is_valid(table.column(key)))
    if table.num_rows < 2:
        return MEMBER_SCHEMA.empty_table()
    table = table.sort_by([(key, "ascending"), ("id", "ascending")])
    keys = table.column(key).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    shared = sizes[group_of] > 1
    if not shared.any():
        return MEMBER_SCHEMA.empty_table()
    root_index = starts[group_of][shared]
    picked = np.flatnonzero(shared)
    ids = table.column("id")
    columns = {"band": pa.array([band] * len(picked), pa.string()), "root": ids.take(pa.array(root_index))}
    for name in ATTRIBUTES:
        columns[name] = table.column(name).take(pa.array(picked))
    return pa.table(columns, schema=MEMBER_SCHEMA)


def partition_members(table: pa.Table, partition: str, params: MinHashParams, band_groups: int) -> pa.Table:
    """All bucket members of one band partition, from the signature rows of every shard."""
    parts = []
    for key in key_columns(partition, params, band_groups):
        parts.append(
            bucket_members(
                table.select(ATTRIBUTES + ([key] if key not in ATTRIBUTES else [])),
                key,
                key if partition != EXACT else EXACT,
            )
        )
    return pa.concat_tables(parts) if parts else MEMBER_SCHEMA.empty_table()
