"""Batches of landing files: what one `crawl_shards` partition holds.

A whole crawl snapshot is about 90,000 files; as one partition each, `rephrased` (shard x strategy)
passes a million partitions, which Dagster's UI and backfill daemon cannot carry. Files are grouped
when they are registered (never regrouped afterwards) and a partition is a batch: by default (`plan`)
a lake's first 500 files are a partition each and later ones batches of 256; CRAWL_BATCH_FILES = N
fixes the size. A batch of one file keeps the file's name as its key and needs no registry entry.

The lake, the status catalog and lineage stay per file: `shard` in every row still names the file,
each file's partitions are committed and recorded on their own, and a run of a batch reads its files
one after another. Only Dagster's keys are batches: `expand` turns a run's keys into files, status
rolls files up into their batch.

Layout (append-only, like the catalog):
    _batches/<ns>-<uuid>.parquet    (batch, file) rows of the batches registered together
A key with no rows is a batch of one file (the key itself). A batch written twice (a registration
retried after a crash) is read from its newest file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

BATCHES = "_batches"
SCHEMA = pa.schema([("batch", pa.string()), ("file", pa.string())])
# Registry files before a registration folds them into one: every status pass and run reads them all,
# so at most 17 reads whatever the crawl's size (a fold reads ~100,000 short rows: milliseconds).
COMPACT_AT = 16


# Shard keys are sanitised to [A-Za-z0-9._-] (resources/paths.py), so only a batch of several files has
# this in its key: keys without it are single files, and need no read of the registry.
MARK = "+"


# CRAWL_BATCH_FILES unset (auto): the first AUTO_SINGLE_FILES files registered to a lake are a partition
# each (a small landing, the demo, every test), files registered after them go in batches of
# AUTO_BATCH_FILES. A whole crawl with no settings: 100,000 files are at most 500 + 389 = 889
# partitions (90,000: 850), under the 1,000 per asset that keep Dagster's UI and daemon quick.
AUTO_SINGLE_FILES = 500
AUTO_BATCH_FILES = 256


def key_of(files: list[str]) -> str:
    """A batch's partition key: its first file's name, and how many files follow it."""
    return files[0] if len(files) == 1 else f"{files[0]}{MARK}{len(files) - 1}"


def group(files: list[str], size: int) -> list[list[str]]:
    """New files, in the order given, `size` at a time (the last batch may be smaller)."""
    return [files[i : i + size] for i in range(0, len(files), size)]


def files_registered(keys: Iterable[str]) -> int:
    """How many files these partition keys hold, from the keys alone (`<first file>+<n more>`)."""
    return sum(1 + int(str(key).rsplit(MARK, 1)[1]) if MARK in str(key) else 1 for key in keys)


def plan(new: list[str], registered_keys: list[str], size: Optional[int]) -> list[list[str]]:
    """How new files become partitions: `size` at a time when CRAWL_BATCH_FILES fixes it; else (auto)
    one each while the lake holds fewer than AUTO_SINGLE_FILES files, then AUTO_BATCH_FILES at a time.
    Decided here, at registration, and never reshuffled."""
    if size is not None:
        return group(new, size)
    room = max(0, AUTO_SINGLE_FILES - files_registered(registered_keys))
    return group(new[:room], 1) + group(new[room:], AUTO_BATCH_FILES)


class Batches:
    """Partition key -> landing files, for keys the registry holds; any other key is one file."""

    def __init__(self, members: dict[str, list[str]]):
        self.members = members

    def files(self, key: str) -> list[str]:
        return self.members.get(key, [key])

    def expand(self, key: str) -> list[str]:
        """A partition key ("batch" or "batch|strategy") as the per-file keys it stands for."""
        head, sep, rest = str(key).partition("|")
        return [f"{f}{sep}{rest}" for f in self.files(head)]

    def files_of(self, keys: Iterable[str]) -> list[str]:
        return [f for key in keys for f in self.files(key)]

    def batch_of(self, keys: Iterable[str]) -> dict[str, str]:
        """file -> the key of its batch, for the files of these keys."""
        return {f: key for key in keys for f in self.files(key)}


def _files(lake) -> list[str]:
    return lake.parquet_files(BATCHES)


def _members(lake, files: list[str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for path in files:  # oldest first: a batch written again is read from its newest file
        table = pq.read_table(path, filesystem=lake.fs, schema=SCHEMA)
        found: dict[str, list[str]] = {}
        for batch, f in zip(table.column("batch").to_pylist(), table.column("file").to_pylist()):
            found.setdefault(batch, []).append(f)
        members.update(found)
    return members


def for_keys(lake, keys: Iterable[str]) -> Batches:
    """What these partition keys ("batch" or "batch|strategy") hold: the registry when one of them is
    a batch of several files, else nothing to read (the default of a partition per file never
    touches the lake here, so a run against an unreachable lake fails in its own step, by name)."""
    if any(MARK in str(key).partition("|")[0] for key in keys):
        return read(lake)
    return Batches({})


def read(lake) -> Batches:
    """The registry: one listing and its files (none for a lake of one-file partitions)."""
    for _ in range(5):
        try:
            return Batches(_members(lake, _files(lake)))
        except FileNotFoundError:  # compacted between the listing and the reads: list again
            continue
    raise RuntimeError(f"the batch registry at {lake.uri(BATCHES)} kept changing while it was read: try again")


def _write(lake, members: dict[str, list[str]]) -> None:
    rows = [(key, f) for key, files in members.items() for f in files]
    table = pa.table({"batch": [r[0] for r in rows], "file": [r[1] for r in rows]}, schema=SCHEMA)
    lake.write_parquet(
        lake.path(BATCHES, f"{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"), table.to_batches(), SCHEMA
    )


def register(lake, groups: list[list[str]]) -> list[str]:
    """Record batches of several files (before their keys are added to Dagster: a key is never
    registered without its files); returns every group's key."""
    several = {key_of(g): list(g) for g in groups if len(g) > 1}
    if several:
        _write(lake, several)
        compact_if_needed(lake)
    return [key_of(g) for g in groups]


def compact_if_needed(lake) -> None:
    files = _files(lake)
    if len(files) <= COMPACT_AT:
        return
    try:
        members = _members(lake, files)
    except FileNotFoundError:  # another writer is compacting the same files
        return
    _write(lake, members)
    for path in files:
        try:
            lake.fs.delete_file(path)
        except FileNotFoundError:
            pass
