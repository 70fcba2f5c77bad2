"""Which partitions of the graph are current, outdated (and why) or missing, read from the lake's
status catalog (`catalog.py`) in one pass: no walk over partition folders.

One computation for everyone: the nightly backfill launches exactly the partitions that are not
current here, `dataset-assets status` prints these counts, and `dataset-assets run` rephrases the
(shard, strategy) pairs this marks missing or outdated.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dataset_assets.dedup.store import BUCKETS, CLUSTERS, SIGNATURES
from dataset_assets.rephrase.chunks import with_output_cap
from dataset_assets.rephrase.strategies import prompt_hash
from dataset_assets.status import batches, catalog
from dataset_assets.status.dedup_decisions import seeds_to_redo
from dataset_assets.status.lake_walk import covered_digest

# The assets whose partitions the nightly backfill fills, in dependency order.
BACKFILLED = ["crawl_docs", SIGNATURES, BUCKETS, CLUSTERS, "seeds", "rephrased"]


@dataclass
class AssetStatus:
    """Current partitions as a count; missing and outdated ones by key, with why (at 100,000 shards
    the graph has over a million current partitions, and nobody needs their keys)."""

    asset: str
    current: int = 0
    pending: dict[Optional[str], tuple[str, list[str]]] = field(default_factory=dict)  # key -> (state, why)

    def add(self, key: Optional[str], state: str, why: Optional[list[str]] = None) -> None:
        if state == "current":
            self.current += 1
        else:
            self.pending[key] = (state, why or [])

    def state(self, key: Optional[str]) -> str:
        """The state of a key this status covers (a key it does not cover reads as current)."""
        return self.pending.get(key, ("current", []))[0]

    def count(self, state: str) -> int:
        return self.current if state == "current" else sum(1 for s, _ in self.pending.values() if s == state)

    def not_current(self) -> list[Optional[str]]:
        return list(self.pending)

    def summary(self, sample: int = 10) -> dict:
        why = Counter(reason for state, reasons in self.pending.values() if state == "outdated" for reason in reasons)
        return {
            "partitions": self.current + len(self.pending),
            "current": self.current,
            "outdated": self.count("outdated"),
            "missing": self.count("missing"),
            "why_outdated": dict(why),
            "outdated_sample": [k for k, (s, _) in self.pending.items() if s == "outdated"][:sample],
            "missing_sample": [k for k, (s, _) in self.pending.items() if s == "missing"][:sample],
        }


@dataclass
class Landing:
    """The partitions to judge: the registered keys (batches of files with CRAWL_BATCH_FILES > 1),
    then landed files no partition holds; and the registered files whose landing file is gone (moved
    or deleted: what the lake holds for them stands, but their crawl_docs cannot be built or rebuilt
    until the file is back)."""

    registry: batches.Batches
    shards: list[str]
    unregistered: list[str]
    gone: list[str]


def landing_view(lake, registered: list[str], landed: list[str]) -> Landing:
    registry = batches.for_keys(lake, registered)
    batch_of = registry.batch_of(registered)
    unregistered = sorted(set(landed) - set(batch_of))
    return Landing(registry, [*registered, *unregistered], unregistered, sorted(set(batch_of) - set(landed)))


def graph_status(
    lake,
    shards: list[str],
    strategies: dict,
    generator: str,
    band_partitions: list[str],
    max_output_tokens: Optional[int] = None,
    registry: Optional[batches.Batches] = None,
) -> dict[str, AssetStatus]:
    """The status of every backfilled partition, from one read of the lake's status catalog and of
    the batch registry (none when the caller passes the `registry` it read). `shards` are partition
    keys; a batch partition is judged file by file, as its files are recorded, then rolled up:
    missing if a file is, else outdated if a file is."""
    table = catalog.read(lake)
    registry = batches.for_keys(lake, shards) if registry is None else registry
    files = registry.files_of(shards)
    recorded = {asset: catalog.facts(table, asset) for asset in BACKFILLED if asset != "rephrased"}
    out = shard_status(recorded, files, band_partitions)
    batch_keys = None
    if registry.members:
        batch_of = registry.batch_of(shards)
        for asset in ("crawl_docs", SIGNATURES, "seeds"):
            out[asset] = by_batch(out[asset], len(shards), batch_of)
        batch_keys = [batch_of[f] for f in files]
    effective = {k: with_output_cap(v, max_output_tokens) for k, v in strategies.items()}
    out["rephrased"] = rephrased_status(table, files, effective, generator, recorded["seeds"], batch_keys)
    return out


def by_batch(status: AssetStatus, batch_count: int, batch_of: dict[str, str]) -> AssetStatus:
    """A per-file status as one per batch key: missing if any file is, else outdated (every file's
    reasons) if any file is, else current."""
    out = AssetStatus(status.asset)
    for f, (state, why) in status.pending.items():
        key = batch_of[f]
        was_state, was_why = out.pending.get(key, (state, []))
        merged = "missing" if "missing" in (was_state, state) else "outdated"
        out.pending[key] = (merged, sorted(set(was_why) | set(why)))
    out.current = batch_count - len(out.pending)
    return out


def shard_status(
    recorded: dict[str, dict[str, dict]], shards: list[str], band_partitions: list[str]
) -> dict[str, AssetStatus]:
    """crawl_docs, the dedup stages and seeds: what the records say each was made from, against now."""
    out = {name: AssetStatus(name) for name in BACKFILLED}
    for asset in ("crawl_docs", SIGNATURES):
        for s in shards:
            out[asset].add(s, "current" if s in recorded[asset] else "missing")

    # The bands and clusters should cover every signed shard and every registered one (to be signed).
    expected = sorted(set(recorded[SIGNATURES]) | set(shards))
    want = covered_digest(expected)
    for band in band_partitions:
        made = recorded[BUCKETS].get(band)
        if made is None:
            out[BUCKETS].add(band, "missing")
        else:
            out[BUCKETS].add(
                band, *(("current",) if made["covered"] == want else ("outdated", ["shards added or removed"]))
            )
    clusters = recorded[CLUSTERS].get("")
    covered = None if clusters is None else clusters["fingerprints"]
    if covered is None:
        out[CLUSTERS].add(None, "missing")
    elif sorted(covered) != expected:
        out[CLUSTERS].add(None, "outdated", ["shards added or removed"])
    elif out[BUCKETS].not_current():
        out[CLUSTERS].add(None, "outdated", ["band partitions rebuilt"])
    else:
        out[CLUSTERS].add(None, "current")

    seeds = recorded["seeds"]
    redo = seeds_to_redo(covered or {}, seeds)
    for s in shards:
        if s not in seeds:
            out["seeds"].add(s, "missing")
        elif s in redo:
            out["seeds"].add(s, "outdated", ["dedup decisions changed"])
        else:
            out["seeds"].add(s, "current")
    return out


_JUDGED_SQL = """
CREATE TEMP VIEW files AS
WITH made AS (
    SELECT partition, prompt_hash, generator, seeds_fingerprint FROM records WHERE asset = 'rephrased'
), pairs AS (
    SELECT s.bi, t.i AS ti, s.batch || '|' || t.name AS key, s.shard || '|' || t.name AS file_key, t.hash, s.kept
    FROM shards s CROSS JOIN strategies t
)
SELECT p.bi, p.ti, p.key, m.partition IS NULL AS missing,
       m.prompt_hash IS DISTINCT FROM p.hash AS prompt_edited,
       m.generator IS DISTINCT FROM (SELECT generator FROM wanted) AS new_generator,
       p.kept IS NOT NULL AND m.seeds_fingerprint IS DISTINCT FROM p.kept AS seeds_changed
FROM pairs p LEFT JOIN made m ON m.partition = p.file_key
"""
_FLAGS = ("missing", "prompt_edited", "new_generator", "seeds_changed")
# One file per partition: the files' verdicts are the partitions'. Batches: any file's verdict is its batch's.
_BY_FILE = (
    "CREATE TEMP VIEW judged AS "
    "SELECT bi AS si, ti, key, missing, prompt_edited, new_generator, seeds_changed FROM files"
)
_BY_BATCH = (
    "CREATE TEMP VIEW judged AS SELECT bi AS si, ti, key, "
    + ", ".join(f"bool_or({f}) AS {f}" for f in _FLAGS)
    + " FROM files GROUP BY bi, ti, key"
)
_PENDING = " OR ".join(_FLAGS)


def rephrased_status(
    table,
    shards: list[str],
    strategies: dict,
    generator: str,
    seeds: dict[str, dict],
    batch_keys: Optional[list[str]] = None,
) -> AssetStatus:
    """Every (shard file x strategy) pair against its record, joined in DuckDB (and grouped by batch
    key when `batch_keys` gives each file's): current partitions are only counted; just the missing
    and outdated ones become Python objects."""
    import duckdb
    import pyarrow as pa

    out = AssetStatus("rephrased")
    names = list(strategies)
    keys = batch_keys if batch_keys is not None else shards
    order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    shard_table = pa.table(
        {
            "bi": [order[k] for k in keys],
            "batch": pa.array(keys, pa.string()),
            "shard": pa.array(shards, pa.string()),
            "kept": pa.array([seeds.get(s, {}).get("kept_fingerprint") for s in shards], pa.string()),
        }
    )
    strategy_table = pa.table(
        {
            "i": list(range(len(names))),
            "name": pa.array(names, pa.string()),
            "hash": pa.array([prompt_hash(strategies[n]) for n in names], pa.string()),
        }
    )
    # A bounded join: past 128 MB DuckDB spills to its temporary directory instead of growing.
    spill = str(Path(tempfile.gettempdir()) / "duckdb-status")
    with duckdb.connect(
        config={"memory_limit": "128MB", "preserve_insertion_order": False, "temp_directory": spill}
    ) as con:
        con.register("records", table)
        con.register("shards", shard_table)
        con.register("strategies", strategy_table)
        con.register("wanted", pa.table({"generator": pa.array([generator], pa.string())}))
        con.execute(_JUDGED_SQL)
        con.execute(_BY_FILE if batch_keys is None else _BY_BATCH)
        out.current = con.execute(f"SELECT count(*) FROM judged WHERE NOT ({_PENDING})").fetchall()[0][0]
        pending = con.execute(
            f"SELECT key, missing, prompt_edited, new_generator, seeds_changed FROM judged WHERE {_PENDING} ORDER BY "
            "si, ti"
        ).fetchall()
    reasons = ("prompt edited", "new generator", "seeds changed")
    for key, missing, *flags in pending:
        out.add(key, "missing") if missing else out.add(key, "outdated", [r for r, f in zip(reasons, flags) if f])
    return out


def render(status: dict[str, AssetStatus]) -> str:
    lines = [f"{'asset':18} {'partitions':>10} {'current':>8} {'outdated':>9} {'missing':>8}  why outdated"]
    for name, st in status.items():
        s = st.summary()
        why = ", ".join(f"{k}: {v}" for k, v in sorted(s["why_outdated"].items()))
        lines.append(f"{name:18} {s['partitions']:>10} {s['current']:>8} {s['outdated']:>9} {s['missing']:>8}  {why}")
    return "\n".join(lines)


def rephrase_needed(
    lake, strategies: dict, shards: list[str], generator: str, max_output_tokens: Optional[int] = None
) -> tuple[set[tuple[str, str]], dict]:
    """(shard, strategy) pairs that are missing or outdated, and the summary of all pairs: exactly
    what `dataset-assets status` and the nightly backfill see (`dataset-assets run` rephrases these)."""
    rephrased = graph_status(lake, shards, strategies, generator, [], max_output_tokens)["rephrased"]
    return {tuple(key.split("|", 1)) for key in rephrased.not_current()}, rephrased.summary(sample=0)
