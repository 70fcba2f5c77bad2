"""The status catalog: one small record per committed partition, kept under the lake in `_catalog/`.

Every stage appends a record right after the data it describes is committed (its data version and
the facts status compares: a seeds partition's kept and dedup fingerprints, a rephrased partition's
prompt hash, generator and seeds fingerprint, a band partition's covered shards, ...). The status
of the whole graph is then one read of the catalog, never a walk over partition folders.

Layout:
    _catalog/records/<ns>-<uuid>.parquet    one record per commit, written atomically
    _catalog/compacted/<ns>-<uuid>.parquet  the latest record per partition, once records pile up
    _catalog/started.json                   the catalog covers every commit since this was written

Concurrent writers never touch each other's files; a compaction deletes only the files it read, and
readers keep the latest record per (asset, partition), so a reader racing a compaction sees the
same catalog. A crash between a partition's data and its record leaves the partition unrecorded:
status calls it missing and it is built again (`rebuild` would find it). A partition deleted by
hand keeps its record until `verify` (or `rebuild`) finds the data gone.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

CATALOG = "_catalog"
RECORDS, COMPACTED, STARTED = "records", "compacted", "started.json"
COMPACT_AT = 256  # record files before a writer compacts them into one
SCHEMA = pa.schema(
    [
        ("asset", pa.string()),
        ("partition", pa.string()),  # shard, band, "shard|strategy", or "" for an unpartitioned asset
        ("committed_ns", pa.int64()),
        ("data_version", pa.string()),
        ("facts", pa.string()),  # JSON: what status compares for this asset
    ]
)


class CatalogMissing(RuntimeError):
    """The lake holds data written before it had a catalog: `dataset-assets catalog --rebuild` once."""


class CatalogDamaged(RuntimeError):
    """A catalog file cannot be read: `dataset-assets catalog --rebuild` reconstructs it from the lake."""


def _files(lake, kind: str) -> list[str]:
    infos = lake.fs.get_file_info(pafs.FileSelector(lake.path(CATALOG, kind), allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet"))


def _name() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def started(lake) -> bool:
    return lake.exists([CATALOG, STARTED])


def _start_if_new(lake, asset: str) -> None:
    """A lake whose only data is the partition just committed starts its catalog now; a lake with
    older data waits for `rebuild` (its older partitions have no records)."""
    if started(lake):
        return
    top = [d for d in lake.subdirectories() if not d.startswith("_")]
    inside = lake.fs.get_file_info(pafs.FileSelector(lake.path(asset), allow_not_found=True))
    if top in ([], [asset]) and len(inside) <= 1:
        lake.put_json([CATALOG, STARTED], {"started_ns": time.time_ns(), "by": f"first commit ({asset})"})


def record(lake, asset: str, partition: str = "", data_version: str = "", **facts) -> None:
    """Append the record of one committed partition (call it after the data is in place)."""
    _start_if_new(lake, asset)
    row = {"asset": asset, "partition": partition, "committed_ns": time.time_ns(), "data_version": data_version,
           "facts": json.dumps(facts, sort_keys=True)}
    lake.write_parquet(lake.path(CATALOG, RECORDS, _name()), _table([row]).to_batches(), SCHEMA)
    if len(_files(lake, RECORDS)) > COMPACT_AT:
        compact(lake)


def _read(lake, files: list[str]) -> pa.Table:
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, filesystem=lake.fs, schema=SCHEMA))
        except FileNotFoundError:  # compacted away since the listing: its rows are in a newer file
            continue
        except Exception as exc:
            raise CatalogDamaged(
                f"status catalog file {f} cannot be read ({type(exc).__name__}: {exc}); "
                "run `dataset-assets catalog --rebuild` to reconstruct the catalog from the lake"
            ) from exc
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def _latest(table: pa.Table) -> pa.Table:
    """The newest record of each (asset, partition), in Arrow (a compacted catalog has one each)."""
    if table.num_rows == 0:
        return table
    newest = table.group_by(["asset", "partition"]).aggregate([("committed_ns", "max")])
    if newest.num_rows == table.num_rows:
        return table
    newest = newest.rename_columns(["asset", "partition", "committed_ns"])
    latest = table.join(newest, keys=["asset", "partition", "committed_ns"], join_type="inner")
    # Two records of one partition in the same nanosecond: keep one.
    if latest.num_rows != newest.num_rows:
        index = pa.array(range(latest.num_rows))
        latest = latest.append_column("_row", index)
        first = latest.group_by(["asset", "partition"]).aggregate([("_row", "min")]).column("_row_min")
        latest = latest.take(first).drop_columns(["_row"])
    return latest.select(SCHEMA.names)


def read(lake) -> pa.Table:
    """The latest record of every recorded partition: two listings and the catalog's files."""
    if not started(lake):
        if not [d for d in lake.subdirectories() if not d.startswith("_")]:
            return SCHEMA.empty_table()  # an empty lake: nothing recorded, nothing missing from the catalog
        raise CatalogMissing(
            f"the lake at {lake.uri()} holds data but no status catalog (it was written by an older version): "
            "run `dataset-assets catalog --rebuild` once to build it from the lake"
        )
    return _latest(_read(lake, _files(lake, COMPACTED) + _files(lake, RECORDS)))


def compact(lake) -> None:
    """Fold every record file (and older compacted files) into one compacted file."""
    inputs = _files(lake, COMPACTED) + _files(lake, RECORDS)
    latest = _latest(_read(lake, inputs))
    lake.write_parquet(lake.path(CATALOG, COMPACTED, _name()), latest.to_batches(), SCHEMA)
    for f in inputs:
        try:
            lake.fs.delete_file(f)
        except FileNotFoundError:  # another compaction took it
            pass


def facts(table: pa.Table, asset: str) -> dict[str, dict]:
    """partition -> facts (with `data_version`) of one asset's records."""
    mask = pc.equal(table.column("asset"), asset)
    sub = table.filter(mask)
    return {
        p: {**json.loads(f), "data_version": v}
        for p, f, v in zip(sub.column("partition").to_pylist(), sub.column("facts").to_pylist(), sub.column("data_version").to_pylist())
    }


def replace_all(lake, rows: Iterable[dict]) -> int:
    """Make the catalog exactly these records (rebuild): one compacted file, then the old files go."""
    old = _files(lake, COMPACTED) + _files(lake, RECORDS)
    now = time.time_ns()
    table = _table([{**r, "committed_ns": now, "facts": json.dumps(r.get("facts", {}), sort_keys=True)} for r in rows])
    lake.write_parquet(lake.path(CATALOG, COMPACTED, _name()), table.to_batches(), SCHEMA)
    for f in old:
        try:
            lake.fs.delete_file(f)
        except FileNotFoundError:
            pass
    lake.put_json([CATALOG, STARTED], {"started_ns": now, "by": "rebuild"})
    return table.num_rows


def rebuild(lake, log: Optional[Callable[[str], None]] = None) -> int:
    """Reconstruct the catalog from the lake itself: the slow walk, once. Returns the records written."""
    from dataset_assets.lake_walk import walk_records

    return replace_all(lake, walk_records(lake, log or (lambda message: None)))


def verify(lake) -> list[tuple[str, str]]:
    """(asset, partition) of every record whose data is no longer in the lake (deleted by hand)."""
    from dataset_assets.lake_walk import recorded_partition_exists

    table = read(lake)
    pairs = zip(table.column("asset").to_pylist(), table.column("partition").to_pylist())
    return [(a, p) for a, p in pairs if not recorded_partition_exists(lake, a, p)]
