"""Where the dedup stages keep their output in the lake, and what later stages read back from it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_assets.dedup.buckets import ATTRIBUTES
from dataset_assets.dedup.clusters import shard_fingerprints
from dataset_assets.dedup.minhash import PARAMS_KEY, MinHashParams

SIGNATURES, BUCKETS, CLUSTERS = "dedup_signatures", "dedup_buckets", "dedup_clusters"
# Footer keys: which shards a bucket or cluster file was built from, and per shard the fingerprint of
# the decisions seeds take from it (seeds store the one they applied under DEDUP_FINGERPRINT).
COVERED_KEY, FINGERPRINTS_KEY, DEDUP_FINGERPRINT = "covered_shards", "shard_fingerprints", "dedup_fingerprint"
NOT_COVERED = "not-covered"


class ParameterMismatch(ValueError):
    """Signature or bucket files made with other MinHash parameters: never mixed."""


def footer(lake, asset: str, partition: dict) -> Optional[dict[bytes, bytes]]:
    files = lake.partition_files(asset, partition)
    if not files:
        return None
    return pq.read_schema(files[0], filesystem=lake.fs).metadata or {}


def read_signature_keys(lake, shards: Iterable[str], params: MinHashParams, key_columns: list[str]) -> pa.Table:
    """The member attributes and the given key columns of every shard's signature file, refusing
    files written with other parameters (they would put unrelated documents in one bucket)."""
    tables, foreign = [], []
    columns = ATTRIBUTES + [c for c in key_columns if c not in ATTRIBUTES]
    for shard in shards:
        meta = footer(lake, SIGNATURES, {"shard": shard}) or {}
        made_with = meta.get(PARAMS_KEY.encode(), b"").decode()
        if made_with != params.key():
            foreign.append(f"{shard} ({made_with or 'no parameters recorded'})")
            continue
        tables.append(lake.read_partition(SIGNATURES, {"shard": shard}, columns=columns))
    if foreign:
        raise ParameterMismatch(
            f"{len(foreign)} signature file(s) were made with other MinHash parameters than {params.key()}: "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}. Materialise dedup_signatures again for "
            "those shards (or run with their parameters); signatures of different parameters are never mixed."
        )
    return pa.concat_tables(tables) if tables else None


def cluster_fingerprints(lake) -> Optional[dict[str, str]]:
    """Shard -> decisions fingerprint of the current clusters; None before the first clustering."""
    meta = footer(lake, CLUSTERS, {})
    if meta is None:
        return None
    return json.loads(meta.get(FINGERPRINTS_KEY.encode(), b"{}"))


def decisions_for_shard(lake, shard: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """(fingerprint, {removed id: (drop reason, representative id)}) for one shard's seeds. The
    fingerprint is NOT_COVERED when the clusters do not include the shard yet."""
    fingerprints = cluster_fingerprints(lake)
    if not fingerprints or shard not in fingerprints:
        return NOT_COVERED, {}
    files = lake.partition_files(CLUSTERS, {})
    table = pq.read_table(
        files[0], filesystem=lake.fs, columns=["id", "kind", "duplicate_of"], filters=[("shard", "=", shard)]
    )
    removed = {
        doc_id: (kind, of)
        for doc_id, kind, of in zip(*(table.column(c).to_pylist() for c in ("id", "kind", "duplicate_of")))
        if of is not None
    }
    return fingerprints[shard], removed


def seeds_dedup_fingerprint(lake, shard: str) -> Optional[str]:
    """The dedup fingerprint a shard's seeds were made with (None without seeds)."""
    meta = footer(lake, "seeds", {"shard": shard})
    if meta is None:
        return None
    return meta.get(DEDUP_FINGERPRINT.encode(), NOT_COVERED.encode()).decode()


def read_buckets(lake, params: MinHashParams, band_partitions: list[str]) -> tuple[pa.Table, list[str]]:
    """Every band partition's members and the shards they cover, refusing (ValueError, naming the
    partition) a missing partition, other parameters (ParameterMismatch), or band partitions built
    from different sets of shards (a half-updated band set)."""
    tables, covered = [], None
    for partition in band_partitions:
        meta = footer(lake, BUCKETS, {"band": partition})
        if meta is None:
            raise ValueError(f"dedup_buckets[{partition}] is missing: materialise every dedup_buckets partition first")
        if meta.get(PARAMS_KEY.encode(), b"").decode() != params.key():
            raise ParameterMismatch(
                f"dedup_buckets[{partition}] was made with other MinHash parameters than {params.key()}; materialise "
                "it again"
            )
        shards = json.loads(meta.get(COVERED_KEY.encode(), b"[]"))
        if covered is not None and shards != covered:
            raise ValueError(
                f"dedup_buckets[{partition}] covers other shards than the other band partitions; materialise every "
                "partition again"
            )
        covered = shards
        tables.append(lake.read_partition(BUCKETS, {"band": partition}))
    members = pa.concat_tables(tables).sort_by([("band", "ascending"), ("root", "ascending"), ("id", "ascending")])
    return members, covered or []


def texts_loader(lake):
    """`load({shard: [ids]}) -> {id: text}` over crawl_docs, for verifying near-duplicate candidates."""

    def load(wanted: dict[str, list[str]]) -> dict[str, str]:
        texts = {}
        for shard, ids in wanted.items():
            table = lake.read_partition("crawl_docs", {"shard": shard}, columns=["id", "text"])
            table = table.filter(pa.compute.is_in(table.column("id"), pa.array(ids)))
            texts.update(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
        return texts

    return load


def write_clusters(lake, decisions: pa.Table, covered: list[str], params: MinHashParams, verify_threshold):
    """Write the clustering with its footer (parameters, per-shard decision fingerprints, the
    verification threshold); (what was written, the fingerprints)."""
    fingerprints = shard_fingerprints(decisions, covered)
    meta = {
        PARAMS_KEY: params.key(),
        FINGERPRINTS_KEY: json.dumps(fingerprints),
        "verify_threshold": str(verify_threshold),
    }
    return lake.write_partition(CLUSTERS, {}, decisions.to_batches(), decisions.schema, meta), fingerprints
