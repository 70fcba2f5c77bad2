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
        # The facts every rephrased partition has, as columns: 1.4 million of them at 100,000 shards
        # cost a third of the memory as columns that they cost as JSON, and DuckDB compares them as is.
        ("prompt_hash", pa.string()),
        ("generator", pa.string()),
        ("seeds_fingerprint", pa.string()),
    ]
)
TYPED = ("prompt_hash", "generator", "seeds_fingerprint")
# In memory the few distinct asset names and generators are dictionary-encoded.
_DICTIONARY = ("asset", "generator")
READ_SCHEMA = pa.schema(
    [pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in _DICTIONARY else f for f in SCHEMA]
)


# The assets that append a record per committed partition.
RECORDED = frozenset(
    {
        "crawl_docs",
        "dedup_signatures",
        "dedup_buckets",
        "dedup_clusters",
        "seeds",
        "rephrased",
        "natural_unigrams",
        "seed_unigrams",
        "rephrased_unigrams",
        "reference_unigrams",
        "corpus_stats",
    }
)


class CatalogMissing(RuntimeError):
    """The lake holds data written before it had a catalog: `dataset-assets catalog --rebuild` once."""


class CatalogDamaged(RuntimeError):
    """A catalog file cannot be read: `dataset-assets catalog --rebuild` reconstructs it from the lake."""


def _files(lake, kind: str) -> list[str]:
    return lake.parquet_files(CATALOG, kind)


def _name() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"


def _row(asset: str, partition: str, data_version: str, facts: dict, committed_ns: int) -> dict:
    typed = {k: facts[k] for k in TYPED if k in facts}
    rest = {k: v for k, v in facts.items() if k not in TYPED}
    return {
        "asset": asset,
        "partition": partition,
        "committed_ns": committed_ns,
        "data_version": data_version,
        "facts": json.dumps(rest, sort_keys=True),
        **typed,
    }


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def started(lake) -> bool:
    return lake.exists([CATALOG, STARTED])


def recorded_assets(lake) -> list[str]:
    """The assets that keep records and have a directory in the lake (one listing of the root)."""
    return [d for d in lake.subdirectories() if d in RECORDED]


def needs_rebuild(lake) -> bool:
    """The lake holds recorded assets' data but no catalog: it was written before the catalog existed."""
    return not started(lake) and bool(recorded_assets(lake))


def _start_if_new(lake, asset: str) -> None:
    """A lake whose only data is the partition just committed starts its catalog now; a lake with
    older data waits for `rebuild` (its older partitions have no records)."""
    if started(lake):
        return
    # Assets that keep no records (the classifier, mixtures) may be there already.
    top = recorded_assets(lake)
    inside = lake.fs.get_file_info(pafs.FileSelector(lake.path(asset), allow_not_found=True))
    if top in ([], [asset]) and len(inside) <= 1:
        lake.put_json([CATALOG, STARTED], {"started_ns": time.time_ns(), "by": f"first commit ({asset})"})


def record(lake, asset: str, partition: str = "", data_version: str = "", **facts) -> None:
    """Append the record of one committed partition (call it after the data is in place)."""
    _start_if_new(lake, asset)
    row = _row(asset, partition, data_version, facts, time.time_ns())
    lake.write_parquet(lake.path(CATALOG, RECORDS, _name()), _table([row]).to_batches(), SCHEMA)
    if len(_files(lake, RECORDS)) > COMPACT_AT:
        compact(lake)


class _Vanished(Exception):
    """A listed catalog file was compacted away before it was read: list again."""


def _read(lake, files: list[str]) -> pa.Table:
    tables = []
    for f in files:
        try:
            tables.append(
                pq.read_table(f, filesystem=lake.fs, schema=SCHEMA, read_dictionary=list(_DICTIONARY)).cast(READ_SCHEMA)
            )
        except FileNotFoundError as exc:  # its rows are in a compacted file the listing did not see
            raise _Vanished(f) from exc
        except Exception as exc:
            raise CatalogDamaged(
                f"status catalog file {f} cannot be read ({type(exc).__name__}: {exc}); "
                "run `dataset-assets catalog --rebuild` to reconstruct the catalog from the lake"
            ) from exc
    return pa.concat_tables(tables).unify_dictionaries() if tables else READ_SCHEMA.empty_table()


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
    return latest.select(READ_SCHEMA.names)


def read(lake) -> pa.Table:
    """The latest record of every recorded partition: two listings and the catalog's files."""
    if not started(lake):
        if not recorded_assets(lake):
            return READ_SCHEMA.empty_table()  # an empty lake: nothing recorded, nothing missing from the catalog
        raise CatalogMissing(
            f"the lake at {lake.uri()} holds data but no status catalog (it was written by an older version): "
            "run `dataset-assets catalog --rebuild` once to build it from the lake"
        )
    for _ in range(5):
        try:
            return _read_listed(lake, _files(lake, COMPACTED), _files(lake, RECORDS))
        except _Vanished:
            continue  # a compaction ran between the listing and the reads
    raise CatalogDamaged("the status catalog kept changing while it was read (five compactions in a row?): try again")


def _read_listed(lake, compacted: list[str], records: list[str]) -> pa.Table:
    if len(compacted) <= 1:
        # The usual shape: one compacted file (one record per partition already) and a few hundred
        # record files at most. Only the small part needs the latest-per-partition pass.
        base, recent = _read(lake, compacted), _latest(_read(lake, records))
        if recent.num_rows == 0:
            return base
        shadowed = pc.is_in(_keys(base), value_set=_keys(recent))
        return pa.concat_tables([base.filter(pc.invert(shadowed)), recent]).unify_dictionaries()
    return _latest(_read(lake, compacted + records))


def _keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table.column("asset").cast(pa.string()), table.column("partition"), "\x00")


def compact(lake) -> None:
    """Fold every record file (and older compacted files) into one compacted file."""
    inputs = _files(lake, COMPACTED) + _files(lake, RECORDS)
    try:
        latest = _latest(_read(lake, inputs))
    except _Vanished:  # another writer is compacting the same files: leave it to that one
        return
    lake.write_parquet(lake.path(CATALOG, COMPACTED, _name()), latest.cast(SCHEMA).to_batches(), SCHEMA)
    for f in inputs:
        try:
            lake.fs.delete_file(f)
        except FileNotFoundError:  # another compaction took it
            pass


def facts(table: pa.Table, asset: str) -> dict[str, dict]:
    """partition -> facts (with `data_version`) of one asset's records."""
    sub = table.filter(pc.equal(table.column("asset"), asset))
    columns = [sub.column(c).to_pylist() for c in ("partition", "facts", "data_version", *TYPED)]
    out = {}
    for p, f, v, *typed in zip(*columns):
        out[p] = {**json.loads(f), **{k: t for k, t in zip(TYPED, typed) if t is not None}, "data_version": v}
    return out


def replace_all(lake, rows: Iterable[dict]) -> int:
    """Make the catalog exactly these records (rebuild): one compacted file, then the old files go."""
    old = _files(lake, COMPACTED) + _files(lake, RECORDS)
    now = time.time_ns()
    table = _table([_row(r["asset"], r["partition"], r.get("data_version", ""), r.get("facts", {}), now) for r in rows])
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
    from dataset_assets.status.lake_walk import walk_records

    return replace_all(lake, walk_records(lake, log or (lambda message: None)))


def verify(lake) -> list[tuple[str, str]]:
    """(asset, partition) of every record whose data is no longer in the lake (deleted by hand)."""
    from dataset_assets.status.lake_walk import recorded_partition_exists

    table = read(lake)
    pairs = zip(table.column("asset").to_pylist(), table.column("partition").to_pylist())
    return [(a, p) for a, p in pairs if not recorded_partition_exists(lake, a, p)]
