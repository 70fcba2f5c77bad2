"""Exact and near-duplicate removal: MinHash signatures, band buckets, clusters and the seeds contract.

The unit tests drive the pure stages; the order test runs `dataset-assets run` on two shards in both
orders and compares every seed's decision.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from dataset_assets.dedup import buckets as bucket_stage
from dataset_assets.dedup.clusters import ClusterStats, cluster, shard_fingerprints
from dataset_assets.dedup.minhash import MinHasher, MinHashParams, jaccard, shingles
from dataset_assets.dedup.signatures import signature_batches
from dataset_assets.dedup.store import CLUSTERS, SIGNATURES, ParameterMismatch, read_signature_keys
from dataset_assets.defs.crawl import crawl_docs
from dataset_assets.defs.dedup import dedup_buckets, dedup_clusters, dedup_signatures
from dataset_assets.orchestration.graph import crawl_shards, dedup_bands
from dataset_assets.status import catalog
from dataset_assets.status.dedup_decisions import seeds_to_redo
from resources.lake import Lake
from resources.landing import CrawlLanding
from tests.conftest import CRAWL, ROOT, distinct_english, write_jsonl_gz

PARAMS = MinHashParams()


def docs(rows: list[dict]) -> pa.Table:
    """crawl_docs-shaped rows: id, shard, url, date, text."""
    return pa.Table.from_pylist(
        [
            {
                "id": r["id"],
                "shard": r.get("shard", "s"),
                "url": r.get("url", f"http://x/{r['id']}"),
                "date": r.get("date"),
                "text": r["text"],
            }
            for r in rows
        ],
        schema=pa.schema(
            [
                ("id", pa.string()),
                ("shard", pa.string()),
                ("url", pa.string()),
                ("date", pa.string()),
                ("text", pa.string()),
            ]
        ),
    )


def signatures(rows: list[dict], params: MinHashParams = PARAMS) -> pa.Table:
    return pa.Table.from_batches(list(signature_batches(docs(rows).to_batches(), params)))


def members(sig: pa.Table, params: MinHashParams = PARAMS, groups: int = 14) -> pa.Table:
    return pa.concat_tables(
        bucket_stage.partition_members(sig, p, params, groups) for p in bucket_stage.partition_names(groups)
    )


def decide(rows: list[dict], verify: float | None = 0.75, stats: ClusterStats | None = None) -> dict[str, dict]:
    texts = {r["id"]: r["text"] for r in rows}
    table = cluster(members(signatures(rows)), lambda wanted: texts, PARAMS.ngram, verify, stats)
    return {r["id"]: r for r in table.to_pylist()}


def edit(text: str, seed: int, words: int = 3) -> str:
    """The same page with a few words changed (a date line, a footer): a near duplicate."""
    rng, tokens = random.Random(seed), text.split()
    for _ in range(words):
        tokens[rng.randrange(len(tokens))] = f"edited{rng.randrange(1000)}"
    return " ".join(tokens)


def test_identical_texts_share_every_band_and_a_small_edit_most_of_them():
    hasher = MinHasher(PARAMS)
    text = distinct_english(3)
    a, b = shingles(text, 5), shingles(text.upper().replace(".", " . "), 5)
    assert np.array_equal(a, b)  # folded exactly as the content hash folds: case and punctuation do not count
    c = shingles(edit(text, 1, words=2), 5)
    assert 0.8 < jaccard(a, c) < 1.0
    same = [x == y for x, y in zip(hasher.band_keys(hasher.signature(a)), hasher.band_keys(hasher.signature(c)))]
    assert sum(same) >= 3  # at this similarity most bands collide; one is enough to become a candidate
    other = shingles(distinct_english(4), 5)
    assert jaccard(a, other) < 0.05 and not any(
        x == y for x, y in zip(hasher.band_keys(hasher.signature(a)), hasher.band_keys(hasher.signature(other)))
    )
    assert MinHashParams.from_key(PARAMS.key()) == PARAMS and round(PARAMS.lsh_threshold(), 2) == 0.72


def test_near_and_exact_duplicates_fold_into_the_earliest_document():
    base = distinct_english(5)
    rows = [
        {"id": "d1", "text": base, "date": "2021-05-01", "shard": "b"},
        {"id": "d2", "text": base.lower(), "date": "2019-01-01", "shard": "a"},  # exact after folding, earliest
        {"id": "d3", "text": edit(base, 2), "date": None, "shard": "c"},  # near, no date
        {"id": "d4", "text": distinct_english(6), "date": "2018-01-01", "shard": "a"},
    ]
    out = decide(rows)
    assert out["d2"]["kind"] == "representative" and out["d2"]["cluster_size"] == 3
    assert (out["d1"]["kind"], out["d1"]["duplicate_of"]) == ("duplicate", "d2")
    assert (out["d3"]["kind"], out["d3"]["duplicate_of"]) == ("near_duplicate", "d2")
    assert "d4" not in out


def test_decisions_do_not_depend_on_the_order_rows_arrive_in():
    base, other = distinct_english(7), distinct_english(8)
    rows = [{"id": f"x{i:02d}", "text": edit(base, i, 2) if i % 3 else base, "shard": f"s{i % 4}"} for i in range(12)]
    rows += [{"id": f"y{i:02d}", "text": edit(other, 100 + i, 2), "shard": f"s{i % 4}"} for i in range(6)]
    first = decide(rows)
    for seed in range(3):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert decide(shuffled) == first
    assert {r["cluster"] for r in first.values()} == {"x00", "y00"}  # no dates: the smallest id represents


def test_short_and_empty_documents_are_kept_and_never_clustered_on_nothing():
    rows = [
        {"id": "e1", "text": "!!! ... ???"},  # folds to nothing: no exact key, no signature
        {"id": "e2", "text": "*** --- ###"},
        {"id": "w1", "text": "Four words only here."},  # fewer words than the n-gram: no signature
        {"id": "w2", "text": "Four words only here!"},  # ...but an exact copy of w1 is still an exact copy
    ]
    sig = signatures(rows).to_pylist()
    assert [(r["exact_key"] is None, r["shingles"]) for r in sig] == [(True, 0), (True, 0), (False, 0), (False, 0)]
    assert all(r["band_00"] is None for r in sig)
    out = decide(rows)
    assert set(out) == {"w1", "w2"} and out["w2"]["kind"] == "duplicate"


def test_a_shard_of_one_repeated_page_and_a_giant_cluster_stay_linear():
    page = distinct_english(9)
    rows = [
        {"id": f"p{i:05d}", "text": page, "shard": f"shard-{i % 40:02d}", "date": f"2020-01-{1 + i % 28:02d}"}
        for i in range(3000)
    ]
    stats = ClusterStats()
    out = decide(rows, stats=stats)
    # One row per member per band partition (a star to the bucket root), never n^2 pairs.
    assert stats.candidate_rows == 3000 * 15
    reps = [r for r in out.values() if r["kind"] == "representative"]
    assert len(reps) == 1 and reps[0]["id"] == "p00000" and reps[0]["cluster_size"] == 3000
    assert sum(r["kind"] == "duplicate" for r in out.values()) == 2999
    # Exact copies join outright: no pair needed verifying.
    assert stats.near_pairs_checked == 0


def test_verification_rejects_a_bucket_collision_that_is_not_a_near_duplicate():
    """Templated pages can share a band without sharing most of their text: with verification on
    the collision is checked against the actual n-gram sets."""
    a, b = distinct_english(10), distinct_english(11)
    sig = signatures([{"id": "a", "text": a}, {"id": "b", "text": b}])
    forged = sig.set_column(sig.schema.get_field_index("band_03"), "band_03", pa.array([42, 42], pa.uint64()))
    collided = members(forged)
    assert collided.num_rows == 2  # one shared bucket
    texts = {"a": a, "b": b}
    stats = ClusterStats()
    assert cluster(collided, lambda w: texts, 5, 0.75, stats).num_rows == 0
    assert (stats.near_pairs_checked, stats.near_pairs_rejected) == (1, 1)
    assert cluster(collided, None, 5, None).num_rows == 2  # trusting the collision merges them


def test_fingerprints_change_for_exactly_the_shards_whose_decisions_change():
    base = distinct_english(12)
    before = [
        {"id": "a1", "text": base, "shard": "A", "date": "2020-01-01"},
        {"id": "c1", "text": distinct_english(13), "shard": "C"},
    ]
    after = before + [
        {"id": "b1", "text": base, "shard": "B", "date": "2019-01-01"}
    ]  # earlier: a1 becomes the duplicate
    fp_before = shard_fingerprints(cluster(members(signatures(before)), None, 5, None), ["A", "C"])
    fp_after = shard_fingerprints(cluster(members(signatures(after)), None, 5, None), ["A", "B", "C"])
    assert fp_before["A"] != fp_after["A"] and fp_before["C"] == fp_after["C"]


def test_signature_files_of_other_parameters_are_refused_never_mixed(tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    from dataset_assets.dedup.minhash import PARAMS_KEY
    from dataset_assets.dedup.signatures import signature_schema

    other = MinHashParams(ngram=3)
    for shard, params in (("s1", PARAMS), ("s2", other)):
        table = signatures([{"id": shard, "text": distinct_english(1), "shard": shard}], params)
        lake.write_partition(
            SIGNATURES, {"shard": shard}, table.to_batches(), signature_schema(params), {PARAMS_KEY: params.key()}
        )
    with pytest.raises(ParameterMismatch) as err:
        read_signature_keys(lake, ["s1", "s2"], PARAMS, ["band_00"])
    assert "s2" in str(err.value) and '"ngram": 3' in str(err.value) and "never mixed" in str(err.value)
    assert read_signature_keys(lake, ["s1"], PARAMS, ["band_00"]).num_rows == 1


def test_band_partitions_of_other_parameters_or_other_shards_are_refused_by_name(tmp_path):
    from dataset_assets.dedup.minhash import PARAMS_KEY
    from dataset_assets.dedup.store import BUCKETS, COVERED_KEY, read_buckets

    lake = Lake(root=str(tmp_path / "lake"))
    empty = bucket_stage.MEMBER_SCHEMA.empty_table()

    def band(key, params=PARAMS, covered=("s1",)):
        meta = {PARAMS_KEY: params.key(), COVERED_KEY: json.dumps(list(covered))}
        lake.write_partition(BUCKETS, {"band": key}, empty.to_batches(), bucket_stage.MEMBER_SCHEMA, meta)

    with pytest.raises(ValueError, match=r"dedup_buckets\[exact\] is missing"):
        read_buckets(lake, PARAMS, ["exact"])
    band("exact")
    band("near-00", MinHashParams(ngram=3))
    with pytest.raises(ParameterMismatch, match=r"dedup_buckets\[near-00\] was made with other MinHash parameters"):
        read_buckets(lake, PARAMS, ["exact", "near-00"])
    band("near-00", covered=("s1", "s2"))
    with pytest.raises(ValueError, match=r"dedup_buckets\[near-00\] covers other shards"):
        read_buckets(lake, PARAMS, ["exact", "near-00"])
    band("near-00")
    members, covered = read_buckets(lake, PARAMS, ["exact", "near-00"])
    assert members.num_rows == 0 and covered == ["s1"]


def test_removed_per_shard_and_the_largest_clusters_table():
    from dataset_assets.dedup.clusters import largest_markdown, removed_per_shard

    decisions = pa.table(
        {"shard": ["a", "a", "b", "b"], "kind": ["representative", "duplicate", "near_duplicate", "duplicate"]}
    )
    assert removed_per_shard(decisions, ["a", "b", "c"]) == {
        "a": {"duplicate": 1, "near_duplicate": 0},
        "b": {"duplicate": 1, "near_duplicate": 1},
        "c": {"duplicate": 0, "near_duplicate": 0},
    }
    table = largest_markdown(
        [{"size": 3, "shards": 2, "exact": 1, "near": 1, "representative": "x", "urls": ["http://u", None]}]
    )
    assert table.splitlines()[2] == "| 3 | 2 | 1 | 1 | `x` | http://u<br> |"


@pytest.fixture()
def dedup_env(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    rows = [{"id": f"r{i}", "text": distinct_english(20 + i), "url": f"http://r/{i}"} for i in range(8)]
    write_jsonl_gz(landing / "one.jsonl.gz", rows)
    write_jsonl_gz(
        landing / "two.jsonl.gz", rows[:3] + [{"id": "e", "text": edit(rows[4]["text"], 5), "url": "http://e"}]
    )
    instance = DagsterInstance.ephemeral()
    resources = {"lake": Lake(root=str(tmp_path / "lake")), "landing": CrawlLanding(location=str(landing))}
    instance.add_dynamic_partitions(crawl_shards.name, ["one.jsonl.gz", "two.jsonl.gz"])
    assets = [crawl_docs, dedup_signatures, dedup_buckets, dedup_clusters]

    def run(selection, key=None, **kw):
        return materialize(assets, selection=selection, partition_key=key, resources=resources, instance=instance, **kw)

    for shard in ("one.jsonl.gz", "two.jsonl.gz"):
        run([crawl_docs], shard)
        run([dedup_signatures], shard)
    return {"run": run, "lake": resources["lake"]}


def test_a_band_partition_that_fails_halfway_leaves_nothing_and_a_rerun_gives_the_same_result(dedup_env, monkeypatch):
    run, lake = dedup_env["run"], dedup_env["lake"]
    run([dedup_buckets], "exact")
    clean = lake.read_partition("dedup_buckets", {"band": "exact"})
    assert clean.num_rows == 6  # three shared pages, two copies each
    lake.fs.delete_dir_contents(lake.partition_path("dedup_buckets", {"band": "exact"}))

    real = bucket_stage.partition_members

    def half(table, partition, params, groups):
        full = real(table, partition, params, groups)

        def batches():
            yield full.slice(0, 3).to_batches()[0]
            raise OSError("worker lost halfway through the band")

        return type(
            "Half", (), {"to_batches": staticmethod(batches), "num_rows": full.num_rows, "column": full.column}
        )()

    monkeypatch.setattr(bucket_stage, "partition_members", half)
    assert not run([dedup_buckets], "exact", raise_on_error=False).success
    assert not lake.has_partition("dedup_buckets", {"band": "exact"})  # nothing that looks finished
    monkeypatch.setattr(bucket_stage, "partition_members", real)
    run([dedup_buckets], "exact")
    assert lake.read_partition("dedup_buckets", {"band": "exact"}).equals(clean)


def test_clusters_refuse_a_missing_band_partition_then_remove_exact_and_near_duplicates(dedup_env):
    run, lake = dedup_env["run"], dedup_env["lake"]
    run([dedup_buckets], "exact")
    result = run([dedup_clusters], raise_on_error=False)
    assert not result.success
    for band in dedup_bands.get_partition_keys():
        run([dedup_buckets], band)
    result = run([dedup_clusters])
    meta = {
        k: v.value
        for k, v in result.get_asset_materialization_events()[-1].event_specific_data.materialization.metadata.items()
    }
    assert (meta["removed_exact"], meta["removed_near"], meta["clusters"]) == (3, 1, 4)
    assert meta["cluster_sizes"] == {"2": 4} and "cluster_size_plot" in meta and "http://e" in meta["largest_clusters"]
    assert lake.exists(["dedup_clusters", "cluster_sizes.png"])
    assert seeds_needing_dedup(lake, ["one.jsonl.gz", "two.jsonl.gz"]) == {
        "one.jsonl.gz": "missing",
        "two.jsonl.gz": "missing",
    }


def seeds_needing_dedup(lake, shards: list[str]) -> dict[str, str]:
    """What the status catalog says: shards whose seeds are missing or made with other dedup decisions."""
    recorded = catalog.read(lake)
    fingerprints = catalog.facts(recorded, CLUSTERS)[""]["fingerprints"]
    return {s: v for s, v in seeds_to_redo(fingerprints, catalog.facts(recorded, "seeds")).items() if s in shards}


# -- the whole CLI, two shards in both orders ---------------------------------------------------------

DEDUP_AND_SEEDS = "crawl_docs,dedup_signatures,dedup_buckets,dedup_clusters,quality_classifier,seeds"


def order_shards(root):
    """A: a real crawl shard. B: three of A's pages copied with an earlier date (A's copies become the
    duplicates once B arrives), three near copies of A's pages, and ten pages of its own."""
    import gzip

    with gzip.open(CRAWL / "cc-main-2019-30-docs.jsonl.gz", "rt") as f:
        a_rows = [json.loads(line) for line in f]
    from dataset_assets.crawl import langid

    # Six long English pages (crawl_docs keeps them) that are not already near copies of another page
    # of A (A holds a few repeats itself).
    grams = [shingles(r["text"], 5) for r in a_rows]
    long_pages = []
    for i, r in enumerate(a_rows):
        lang, score = langid.identify([r["text"]])[0]
        if len(r["text"].split()) > 300 and lang == "en" and score > 0.9:
            if all(jaccard(grams[i], grams[j]) < 0.3 for j in range(len(a_rows)) if j != i):
                long_pages.append(r)
        if len(long_pages) == 6:
            break
    b_rows = [
        {"id": f"copy{i}", "text": r["text"], "url": f"http://mirror/{i}", "date": "2001-01-01T00:00:00Z"}
        for i, r in enumerate(long_pages[:3])
    ]
    b_rows += [
        {"id": f"near{i}", "text": edit(r["text"], i, 4), "url": f"http://near/{i}", "date": "2030-01-01T00:00:00Z"}
        for i, r in enumerate(long_pages[3:])
    ]
    b_rows += [{"id": f"own{i}", "text": distinct_english(40 + i), "url": f"http://own/{i}"} for i in range(10)]
    a = root / "A.jsonl.gz"
    a.write_bytes((CRAWL / "cc-main-2019-30-docs.jsonl.gz").read_bytes())
    b = write_jsonl_gz(root / "B.jsonl.gz", b_rows)
    c = write_jsonl_gz(
        root / "C.jsonl.gz",
        [{"id": f"c{i}", "text": distinct_english(60 + i), "url": f"http://c/{i}"} for i in range(5)],
    )
    return a, b, c


def cli_run(landing, lake, home, select=DEDUP_AND_SEEDS):
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataset_assets.cli",
            "run",
            "--landing",
            str(landing),
            "--lake",
            str(lake),
            "--select",
            select,
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def seed_decisions(lake: Lake) -> dict:
    out = {}
    for shard in lake.partition_values("seeds", "shard"):
        for r in lake.read_partition(
            "seeds", {"shard": shard}, columns=["id", "kept", "drop_reason", "duplicate_of"]
        ).to_pylist():
            out[r["id"]] = (shard, r["kept"], r["drop_reason"], r["duplicate_of"])
    return out


def test_the_kept_documents_do_not_depend_on_the_order_shards_arrive_in(tmp_path):
    a, b, c = order_shards(tmp_path)
    results = {}
    for order in ((a, c, b), (b, c, a)):
        name = "-".join(p.stem.split(".")[0] for p in order)
        landing, lake_root, home = tmp_path / name / "landing", tmp_path / name / "lake", tmp_path / name / "home"
        landing.mkdir(parents=True)
        home.mkdir()
        for path in order[:2]:
            (landing / path.name).write_bytes(path.read_bytes())
        cli_run(landing, lake_root, home)
        lake = Lake(root=str(lake_root))
        (landing / order[2].name).write_bytes(order[2].read_bytes())
        cli_run(landing, lake_root, home, "crawl_docs,dedup_signatures,dedup_buckets,dedup_clusters")
        # Exactly the seeds whose decisions change are outdated; C's never are. A first: B's older copies
        # make three of A's seeded pages duplicates. B first: A's pages make B's later near copies near
        # duplicates. Either way the arriving shard's seeds are missing.
        expected = (
            {"A.jsonl.gz": "outdated", "B.jsonl.gz": "missing"}
            if order[0] is a
            else {"A.jsonl.gz": "missing", "B.jsonl.gz": "outdated"}
        )
        assert seeds_needing_dedup(lake, ["A.jsonl.gz", "B.jsonl.gz", "C.jsonl.gz"]) == expected
        cli_run(landing, lake_root, home)
        assert seeds_needing_dedup(lake, ["A.jsonl.gz", "B.jsonl.gz", "C.jsonl.gz"]) == {}
        results[name] = seed_decisions(lake)
    first, second = results.values()
    assert first == second
    removed = {k: v for k, v in first.items() if v[2] in ("duplicate", "near_duplicate")}
    # B's dated copies represent their clusters; its near copies (dated later) fold into A's pages.
    copies_of = {v[3] for v in removed.values() if v[0] == "A.jsonl.gz" and first[v[3]][0] == "B.jsonl.gz"}
    near_in_b = [v for v in removed.values() if v[0] == "B.jsonl.gz"]
    assert len(copies_of) == 3 and all(first[k][2] != "duplicate" for k in copies_of)
    assert (
        len(near_in_b) == 3
        and {v[2] for v in near_in_b} == {"near_duplicate"}
        and {first[v[3]][0] for v in near_in_b} == {"A.jsonl.gz"}
    )
    assert all(first[v[3]][3] is None for v in removed.values())  # every representative keeps its own lineage


def test_the_dedup_seeds_sensor_requests_consecutive_shards_as_range_runs_in_bounded_ticks(tmp_path, monkeypatch):
    """Seeds to (re)build after new clusters: consecutive shards in partition order share one range
    run (one model load), a shard alone keeps its partition run, shards no longer registered are
    left out, and a tick asks for at most LANDING_SENSOR_BATCH shards (the cursor stays until all are asked)."""
    from dagster import build_sensor_context

    from dataset_assets import definitions
    from dataset_assets.defs.dedup import dedup_seeds_sensor
    from dataset_assets.orchestration.shard_runs import shard_groups

    assert shard_groups(list("abcdef"), set("abdef"), 2) == [["a", "b"], ["d", "e"], ["f"]]
    assert shard_groups(list("abc"), set(), 2) == []
    lake = Lake(root=str(tmp_path / "lake"))
    fingerprints = {s: f"f-{s}" for s in ("a", "b", "c", "d", "e", "gone")}
    catalog.record(lake, "dedup_clusters", "", "v1", fingerprints=fingerprints)
    catalog.record(lake, "seeds", "c", "v1", kept_fingerprint="k", dedup_fingerprint="f-c")  # current
    catalog.record(lake, "seeds", "d", "v1", kept_fingerprint="k", dedup_fingerprint="older")  # outdated
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, ["a", "b", "c", "d", "e"])

    def tick(cursor=None):
        with build_sensor_context(
            instance=instance,
            resources={"lake": lake},
            cursor=cursor,
            repository_def=definitions.defs.get_repository_def(),
        ) as context:
            return dedup_seeds_sensor(context)

    result = tick()
    spans = [
        (
            r.tags.get("dagster/asset_partition_range_start"),
            r.tags.get("dagster/asset_partition_range_end"),
            r.partition_key,
        )
        for r in result.run_requests
    ]
    assert spans == [("a", "b", None), ("d", "e", None)]
    assert len({r.run_key for r in result.run_requests}) == 2 and result.cursor  # everything registered was asked for

    monkeypatch.setenv("BACKFILL_SHARDS_PER_RUN", "1")
    monkeypatch.setenv("LANDING_SENSOR_BATCH", "2")
    first = tick()
    assert [r.partition_key for r in first.run_requests] == [
        "a",
        "b",
    ] and first.cursor is None  # two left for the next tick
    assert first.run_requests[0].run_key == "dedup:a:f-a"
