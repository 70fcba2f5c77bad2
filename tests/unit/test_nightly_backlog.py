"""The nightly backfill's decisions without Dagster (`status/nightly.py`): which cron slot to act on,
and the backlog cut into whole shards."""

from __future__ import annotations

from dataset_assets.status.judge import AssetStatus
from dataset_assets.status.nightly import MORE, backlog, slot_to_act_on


def statuses(missing: dict[str, list[str]]) -> dict[str, AssetStatus]:
    out = {}
    for asset in ("crawl_docs", "dedup_signatures", "dedup_buckets", "dedup_clusters", "seeds", "rephrased"):
        out[asset] = AssetStatus(asset)
        out[asset].add("current-key", "current")
        for key in missing.get(asset, []):
            out[asset].add(key, "missing")
    return out


def test_the_first_evaluation_remembers_the_slot_and_acts_on_none():
    assert slot_to_act_on(100.0, None) == (None, "100.0")


def test_a_newer_slot_is_acted_on_once():
    assert slot_to_act_on(200.0, "100.0") == (200.0, "200.0")
    assert slot_to_act_on(200.0, "200.0") == (None, "200.0")


def test_a_split_slot_is_acted_on_again_whatever_the_latest_slot():
    assert slot_to_act_on(300.0, "200.0" + MORE) == (200.0, "200.0")


def test_without_a_limit_the_backlog_is_every_partition_not_current():
    status = statuses({"crawl_docs": ["s2"], "dedup_buckets": ["near-00"], "rephrased": ["s1|qa", "s2|qa"]})
    pairs, total = backlog(status)
    assert total == 4
    assert sorted(pairs) == [
        ("crawl_docs", "s2"),
        ("dedup_buckets", "near-00"),
        ("rephrased", "s1|qa"),
        ("rephrased", "s2|qa"),
    ]


def test_a_limit_takes_shared_partitions_and_whole_shards_in_key_order():
    status = statuses(
        {
            "dedup_clusters": [""],
            "crawl_docs": ["s1", "s2", "s3"],
            "seeds": ["s1", "s2", "s3"],
            "rephrased": ["s1|qa", "s1|faq", "s2|qa", "s3|qa"],
        }
    )
    pairs, total = backlog(status, limit=6)
    assert total == 11
    # clusters (1) + s1 (4) = 5; s2 (3) would make 8 > 6: s1 alone, never half a shard.
    assert sorted(pairs) == [
        ("crawl_docs", "s1"),
        ("dedup_clusters", ""),
        ("rephrased", "s1|faq"),
        ("rephrased", "s1|qa"),
        ("seeds", "s1"),
    ]


def test_a_limit_below_one_shard_still_takes_that_shard():
    status = statuses({"rephrased": ["s1|qa", "s1|faq", "s1|table"]})
    pairs, total = backlog(status, limit=1)
    assert total == 3 and len(pairs) == 3
