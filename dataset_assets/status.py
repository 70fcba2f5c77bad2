"""Which partitions of the graph are current, outdated (and why) or missing, read from the lake's
status catalog (`catalog.py`) in one pass: no walk over partition folders.

One computation for everyone: the nightly backfill launches exactly the partitions that are not
current here, `dataset-assets status` prints these counts, and `dataset-assets run` rephrases the
(shard, strategy) pairs this marks missing or outdated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from dataset_assets import catalog
from dataset_assets.dedup.store import BUCKETS, CLUSTERS, SIGNATURES
from dataset_assets.lake_walk import covered_digest
from dataset_assets.rephrase.chunks import with_output_cap
from dataset_assets.rephrase.strategies import prompt_hash

# The assets whose partitions the nightly backfill fills, in dependency order.
BACKFILLED = ["crawl_docs", SIGNATURES, BUCKETS, CLUSTERS, "seeds", "rephrased"]


@dataclass
class AssetStatus:
    asset: str
    partitions: dict[Optional[str], tuple[str, list[str]]] = field(default_factory=dict)  # key -> (state, why)

    def count(self, state: str) -> int:
        return sum(1 for s, _ in self.partitions.values() if s == state)

    def not_current(self) -> list[Optional[str]]:
        return [k for k, (s, _) in self.partitions.items() if s != "current"]

    def summary(self, sample: int = 10) -> dict:
        why = Counter(reason for state, reasons in self.partitions.values() if state == "outdated" for reason in reasons)
        return {
            "partitions": len(self.partitions),
            "current": self.count("current"),
            "outdated": self.count("outdated"),
            "missing": self.count("missing"),
            "why_outdated": dict(why),
            "outdated_sample": [k for k, (s, _) in self.partitions.items() if s == "outdated"][:sample],
            "missing_sample": [k for k, (s, _) in self.partitions.items() if s == "missing"][:sample],
        }


def graph_status(lake, shards: list[str], strategies: dict, generator: str, band_partitions: list[str],
                 max_output_tokens: Optional[int] = None) -> dict[str, AssetStatus]:
    """The status of every backfilled partition, from one read of the lake's status catalog."""
    table = catalog.read(lake)
    recorded = {asset: catalog.facts(table, asset) for asset in BACKFILLED}
    return status_from_records(recorded, shards, strategies, generator, band_partitions, max_output_tokens)


def status_from_records(recorded: dict[str, dict[str, dict]], shards: list[str], strategies: dict, generator: str,
                        band_partitions: list[str], max_output_tokens: Optional[int] = None) -> dict[str, AssetStatus]:
    """Compare what the records say each partition was made from with what it would be made from now."""
    out = {name: AssetStatus(name) for name in BACKFILLED}
    for asset in ("crawl_docs", SIGNATURES):
        out[asset].partitions = {s: ("current" if s in recorded[asset] else "missing", []) for s in shards}

    # The bands and clusters should cover every signed shard and every registered one (to be signed).
    expected = sorted(set(recorded[SIGNATURES]) | set(shards))
    want = covered_digest(expected)
    for band in band_partitions:
        made = recorded[BUCKETS].get(band)
        if made is None:
            out[BUCKETS].partitions[band] = ("missing", [])
        else:
            out[BUCKETS].partitions[band] = ("current", []) if made["covered"] == want else ("outdated", ["shards added or removed"])
    clusters = recorded[CLUSTERS].get("")
    covered = None if clusters is None else clusters["fingerprints"]
    if covered is None:
        out[CLUSTERS].partitions[None] = ("missing", [])
    elif sorted(covered) != expected:
        out[CLUSTERS].partitions[None] = ("outdated", ["shards added or removed"])
    elif out[BUCKETS].not_current():
        out[CLUSTERS].partitions[None] = ("outdated", ["band partitions rebuilt"])
    else:
        out[CLUSTERS].partitions[None] = ("current", [])

    seeds = recorded["seeds"]
    redo = seeds_to_redo(covered or {}, seeds)
    for s in shards:
        if s not in seeds:
            out["seeds"].partitions[s] = ("missing", [])
        elif s in redo:
            out["seeds"].partitions[s] = ("outdated", ["dedup decisions changed"])
        else:
            out["seeds"].partitions[s] = ("current", [])

    effective = {k: with_output_cap(v, max_output_tokens) for k, v in strategies.items()}
    hashes = {name: prompt_hash(strategy) for name, strategy in effective.items()}
    made = recorded["rephrased"]
    for shard in shards:
        seeds_now = seeds.get(shard, {}).get("kept_fingerprint")
        for name in effective:
            key = f"{shard}|{name}"
            manifest = made.get(key)
            if manifest is None:
                out["rephrased"].partitions[key] = ("missing", [])
                continue
            why = []
            if manifest.get("prompt_hash") != hashes[name]:
                why.append("prompt edited")
            if manifest.get("generator") != generator:
                why.append("new generator")
            if seeds_now is not None and manifest.get("seeds_fingerprint") != seeds_now:
                why.append("seeds changed")
            out["rephrased"].partitions[key] = ("outdated" if why else "current", why)
    return out


def seeds_to_redo(fingerprints: dict[str, str], seeds: dict[str, dict]) -> dict[str, str]:
    """Shards the clusters cover whose seeds are missing or were made with other dedup decisions:
    {shard: "missing" | "outdated"}. Exactly the seeds partitions a new clustering affects."""
    out = {}
    for shard, fingerprint in fingerprints.items():
        made = seeds.get(shard)
        if made is None:
            out[shard] = "missing"
        elif made.get("dedup_fingerprint") != fingerprint:
            out[shard] = "outdated"
    return out


def render(status: dict[str, AssetStatus]) -> str:
    lines = [f"{'asset':18} {'partitions':>10} {'current':>8} {'outdated':>9} {'missing':>8}  why outdated"]
    for name, st in status.items():
        s = st.summary()
        why = ", ".join(f"{k}: {v}" for k, v in sorted(s["why_outdated"].items()))
        lines.append(f"{name:18} {s['partitions']:>10} {s['current']:>8} {s['outdated']:>9} {s['missing']:>8}  {why}")
    return "\n".join(lines)
