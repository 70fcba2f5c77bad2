"""Which partitions of the graph are current, outdated (and why) or missing, read from the lake.

One computation for everyone: the nightly backfill launches exactly the partitions that are not
current here, `dataset-assets status` prints these counts, and `dataset-assets run` rephrases the
(shard, strategy) pairs this marks missing or outdated.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from dataset_assets.dedup.store import BUCKETS, CLUSTERS, COVERED_KEY, SIGNATURES, cluster_fingerprints, footer, seeds_needing_dedup
from dataset_assets.rephrase.chunks import with_output_cap
from dataset_assets.rephrase.store import partition_reasons

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
    out = {name: AssetStatus(name) for name in BACKFILLED}
    have = {asset: set(lake.partition_values(asset, "shard")) for asset in ("crawl_docs", SIGNATURES, "seeds")}
    for asset in ("crawl_docs", SIGNATURES):
        out[asset].partitions = {s: ("current" if s in have[asset] else "missing", []) for s in shards}

    # The bands and clusters should cover every signed shard and every registered one (to be signed).
    expected = sorted(have[SIGNATURES] | set(shards))
    covered = cluster_fingerprints(lake)
    for band in band_partitions:
        meta = footer(lake, BUCKETS, {"band": band})
        if meta is None:
            out[BUCKETS].partitions[band] = ("missing", [])
        else:
            built_from = json.loads(meta.get(COVERED_KEY.encode(), b"[]"))
            out[BUCKETS].partitions[band] = ("current", []) if built_from == expected else ("outdated", ["shards added or removed"])
    if covered is None:
        out[CLUSTERS].partitions[None] = ("missing", [])
    elif sorted(covered) != expected:
        out[CLUSTERS].partitions[None] = ("outdated", ["shards added or removed"])
    elif out[BUCKETS].not_current():
        out[CLUSTERS].partitions[None] = ("outdated", ["band partitions rebuilt"])
    else:
        out[CLUSTERS].partitions[None] = ("current", [])

    redo = seeds_needing_dedup(lake, [s for s in shards if s in have["seeds"]])
    for s in shards:
        if s not in have["seeds"]:
            out["seeds"].partitions[s] = ("missing", [])
        elif s in redo:
            out["seeds"].partitions[s] = ("outdated", ["dedup decisions changed"])
        else:
            out["seeds"].partitions[s] = ("current", [])

    effective = {k: with_output_cap(v, max_output_tokens) for k, v in strategies.items()}
    for (shard, strategy), state in partition_reasons(lake, effective, shards, generator).items():
        out["rephrased"].partitions[f"{shard}|{strategy}"] = state
    return out


def render(status: dict[str, AssetStatus]) -> str:
    lines = [f"{'asset':18} {'partitions':>10} {'current':>8} {'outdated':>9} {'missing':>8}  why outdated"]
    for name, st in status.items():
        s = st.summary()
        why = ", ".join(f"{k}: {v}" for k, v in sorted(s["why_outdated"].items()))
        lines.append(f"{name:18} {s['partitions']:>10} {s['current']:>8} {s['outdated']:>9} {s['missing']:>8}  {why}")
    return "\n".join(lines)
