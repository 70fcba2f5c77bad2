"""A mixture's rows as fixed-size, zstd Parquet shards written in parallel, each with its sha256."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_assets.mixtures.sampling import MIXTURE_SCHEMA
from resources.lake import Lake


def fixed_size_tables(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def parquet_bytes(table: pa.Table) -> bytes:
    """zstd at pyarrow's default level, as every other lake file; dictionaries and statistics only
    where they pay off (a dictionary or min/max of document text costs time and saves nothing)."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=["component", "shard", "prompt_hash", "generator"],
        write_statistics=[n for n in table.column_names if n != "text"],
    )
    return sink.getvalue().to_pybytes()


def write_shards(lake: Lake, staging: list[str], tables: Iterator[pa.Table], workers: int = 2) -> dict[str, dict]:
    """`part-<n>.parquet` per table, encoded on `workers` threads (Parquet's zstd writer is serial per file);
    at most `workers` shards are in memory at once."""

    def write(name: str, table: pa.Table) -> dict:
        data = parquet_bytes(table.cast(MIXTURE_SCHEMA))
        lake.put_bytes([*staging, name], data)
        return entry(data, table.num_rows)

    files: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for i, table in enumerate(tables):
            if len(pending) >= workers:
                name, future = pending.popleft()
                files[name] = future.result()
            name = f"part-{i:05d}.parquet"
            pending.append((name, pool.submit(write, name, table)))
        for name, future in pending:
            files[name] = future.result()
    return dict(sorted(files.items()))


def entry(data: bytes, rows: Optional[int] = None) -> dict:
    entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return {**entry, "rows": rows} if rows is not None else entry
