"""Stage 3, over the crawl: candidate buckets to duplicate clusters, one representative each.

Exact-key buckets join their members outright. A near-duplicate bucket is only a candidate: with
verification on, a member joins a bucket-mate only when the Jaccard similarity of their actual word
n-gram sets reaches the threshold (LSH collisions on templated text are not proof). Clusters are the
connected components (union-find over document ids). The representative is chosen by a rule that
does not depend on the order shards arrived in: the earliest crawl date (documents without one come
last), then the smallest id. Every other member is removed: `duplicate` when its exact key equals the
representative's, else `near_duplicate`, with `duplicate_of` naming the representative.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from dataset_assets.dedup.buckets import EXACT
from dataset_assets.dedup.minhash import jaccard, shingles

DECISION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("shard", pa.string()),
        ("url", pa.string()),
        ("cluster", pa.string()),  # the representative's id: one value per cluster
        ("cluster_size", pa.int32()),
        ("kind", pa.string()),  # representative | duplicate | near_duplicate
        ("duplicate_of", pa.string()),  # null for the representative
    ]
)
NO_DATE = "\uffff"  # sorts after every ISO date: documents without a crawl date never win on date


class UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return int(x)

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


@dataclass
class ClusterStats:
    candidate_rows: int = 0
    near_pairs_checked: int = 0
    near_pairs_rejected: int = 0
    removed: Counter = field(default_factory=Counter)


def representative_key(date: Optional[str], doc_id: str) -> tuple[str, str]:
    return (date or NO_DATE, doc_id)


def cluster(
    members: pa.Table,
    texts_for: Optional[Callable[[Mapping[str, list[str]]], Mapping[str, str]]],
    ngram: int,
    verify_threshold: Optional[float],
    stats: Optional[ClusterStats] = None,
) -> pa.Table:
    """Bucket members of every band partition to one decision row per clustered document.

    `texts_for({shard: [ids]})` returns the texts of near-duplicate candidates; it is called once,
    and only when verification is on (`verify_threshold` not None)."""
    stats = stats if stats is not None else ClusterStats()
    stats.candidate_rows = members.num_rows
    if members.num_rows == 0:
        return DECISION_SCHEMA.empty_table()
    cols = members.to_pydict()
    index: dict[str, int] = {}
    attrs: list[tuple] = []
    for doc_id, shard, url, date, key in zip(cols["id"], cols["shard"], cols["url"], cols["date"], cols["exact_key"]):
        if doc_id not in index:
            index[doc_id] = len(attrs)
            attrs.append((doc_id, shard, url, date, key))
    uf = UnionFind(len(attrs))
    buckets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for band, root, doc_id in zip(cols["band"], cols["root"], cols["id"]):
        if band == EXACT:
            uf.union(index[doc_id], index[root])
        else:
            buckets[(band, root)].append(index[doc_id])
    if verify_threshold is None:
        for bucket in buckets.values():
            for i in bucket[1:]:
                uf.union(bucket[0], i)
    elif buckets:
        _verified_unions(uf, buckets, attrs, texts_for, ngram, verify_threshold, stats)
    return _decisions(uf, attrs, stats)


def _verified_unions(uf, buckets, attrs, texts_for, ngram, threshold, stats) -> None:
    wanted: dict[str, list[str]] = defaultdict(list)
    for i in sorted({i for bucket in buckets.values() for i in bucket}):
        wanted[attrs[i][1]].append(attrs[i][0])
    texts = texts_for(wanted)
    grams: dict[int, np.ndarray] = {}

    def grams_of(i: int) -> np.ndarray:
        if i not in grams:
            grams[i] = shingles(texts.get(attrs[i][0], ""), ngram)
        return grams[i]

    checked: dict[tuple[int, int], bool] = {}
    for bucket in buckets.values():
        leaders: list[int] = []
        for i in sorted(bucket, key=lambda j: attrs[j][0]):
            joined = False
            for leader in leaders:
                if uf.find(i) == uf.find(leader):
                    joined = True
                    break
                pair = (min(i, leader), max(i, leader))
                if pair not in checked:
                    stats.near_pairs_checked += 1
                    checked[pair] = jaccard(grams_of(i), grams_of(leader)) >= threshold
                    stats.near_pairs_rejected += not checked[pair]
                if checked[pair]:
                    uf.union(i, leader)
                    joined = True
                    break
            if not joined:
                leaders.append(i)


def _decisions(uf: UnionFind, attrs: list[tuple], stats: ClusterStats) -> pa.Table:
    components: dict[int, list[int]] = defaultdict(list)
    for i in range(len(attrs)):
        components[uf.find(i)].append(i)
    rows = {name: [] for name in DECISION_SCHEMA.names}
    for group in components.values():
        if len(group) < 2:
            continue
        rep = min(group, key=lambda i: representative_key(attrs[i][3], attrs[i][0]))
        rep_id, rep_key = attrs[rep][0], attrs[rep][4]
        for i in sorted(group, key=lambda j: attrs[j][0]):
            doc_id, shard, url, _, key = attrs[i]
            kind = (
                "representative"
                if i == rep
                else ("duplicate" if key is not None and key == rep_key else "near_duplicate")
            )
            if i != rep:
                stats.removed[kind] += 1
            for name, value in zip(
                DECISION_SCHEMA.names, (doc_id, shard, url, rep_id, len(group), kind, None if i == rep else rep_id)
            ):
                rows[name].append(value)
    table = pa.table(rows, schema=DECISION_SCHEMA)
    return table.sort_by([("shard", "ascending"), ("id", "ascending")])


def shard_fingerprints(decisions: pa.Table, shards: list[str]) -> dict[str, str]:
    """Per covered shard, a fingerprint of what `seeds` takes from the clusters: its removed documents
    and whom each is folded into. A shard the clusters cover but remove nothing from has the empty
    fingerprint; one they do not cover has none (so its seeds are not deduplicated yet)."""
    removed: dict[str, list[tuple]] = defaultdict(list)
    for doc_id, shard, kind, of in zip(
        *(decisions.column(c).to_pylist() for c in ("id", "shard", "kind", "duplicate_of"))
    ):
        if of is not None:
            removed[shard].append((doc_id, kind, of))
    out = {}
    for shard in shards:
        h = hashlib.sha256()
        for row in sorted(removed.get(shard, [])):
            h.update("\x00".join(row).encode() + b"\n")
        out[shard] = h.hexdigest()[:16]
    return out


def size_distribution(decisions: pa.Table) -> dict[int, int]:
    """Cluster size -> number of clusters."""
    sizes = Counter()
    for kind, size in zip(decisions.column("kind").to_pylist(), decisions.column("cluster_size").to_pylist()):
        if kind == "representative":
            sizes[size] += 1
    return dict(sorted(sizes.items()))


def largest_clusters(decisions: pa.Table, top: int = 10, sample: int = 5) -> list[dict]:
    """The biggest clusters with a sample of their URLs: boilerplate sites show up here."""
    by_cluster: dict[str, list[dict]] = defaultdict(list)
    for row in decisions.select(["cluster", "cluster_size", "url", "shard", "kind"]).to_pylist():
        by_cluster[row["cluster"]].append(row)
    ranked = sorted(by_cluster.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [
        {
            "representative": cluster_id,
            "size": len(rows),
            "shards": len({r["shard"] for r in rows}),
            "exact": sum(r["kind"] == "duplicate" for r in rows),
            "near": sum(r["kind"] == "near_duplicate" for r in rows),
            "urls": [r["url"] for r in rows[:sample]],
        }
        for cluster_id, rows in ranked
    ]


def removed_per_shard(decisions: pa.Table, covered: list[str]) -> dict[str, dict[str, int]]:
    """Per covered shard, the exact and near duplicates its documents were folded away as."""
    per_shard: Counter = Counter()
    for shard, kind in zip(decisions.column("shard").to_pylist(), decisions.column("kind").to_pylist()):
        if kind != "representative":
            per_shard[(shard, kind)] += 1
    return {
        s: {"duplicate": per_shard[(s, "duplicate")], "near_duplicate": per_shard[(s, "near_duplicate")]}
        for s in covered
    }


def largest_markdown(largest: list[dict]) -> str:
    """`largest_clusters` as a Markdown table (sizes, shards, kinds, sample URLs)."""
    header = "| size | shards | exact | near | representative | sample URLs |\n|---|---|---|---|---|---|\n"
    return header + "".join(
        f"| {c['size']} | {c['shards']} | {c['exact']} | {c['near']} | `{c['representative']}` | "
        f"{'<br>'.join(u or '' for u in c['urls'])} |\n"
        for c in largest
    )
