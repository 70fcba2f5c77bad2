"""The asset graph users see, pinned: asset keys, groups, partitioning, upstream edges, checks,
automation and backfill policies. A move of code must not change it; a change to the graph changes the
snapshot on purpose:

    python -m tests.assets.test_graph_snapshot --write    (then review the diff of tests/fixtures/asset_graph.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "asset_graph.json"


def partitioning(pdef) -> str | None:
    if pdef is None:
        return None
    name = type(pdef).__name__.replace("PartitionsDefinition", "").lower()
    if hasattr(pdef, "partitions_defs"):  # multi: its dimensions
        return name + "(" + ", ".join(f"{d.name}={partitioning(d.partitions_def)}" for d in pdef.partitions_defs) + ")"
    if getattr(pdef, "name", None):
        return f"{name}:{pdef.name}"
    return name


def _policy(policy) -> str | None:
    if policy is None:
        return None
    return (
        f"{policy.policy_type.value.lower()}(max {policy.max_partitions_per_run})"
        if policy.max_partitions_per_run
        else policy.policy_type.value.lower()
    )


def graph() -> dict:
    from dataset_assets.definitions import defs

    g = defs.resolve_asset_graph()
    out = {}
    for key in sorted(g.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = g.get(key)
        out[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": partitioning(node.partitions_def),
            "upstream": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "backfill_policy": _policy(node.backfill_policy),
        }
    return {"assets": out, "sensors": sorted(s.name for s in defs.sensors)}


def test_the_asset_graph_matches_its_snapshot():
    expected = json.loads(SNAPSHOT.read_text())
    actual = graph()
    assert actual == expected, (
        "the asset graph changed; if that is intended, run `python -m tests.assets.test_graph_snapshot --write` and "
        "review the diff"
    )


if __name__ == "__main__" and "--write" in sys.argv:
    SNAPSHOT.write_text(json.dumps(graph(), indent=2) + "\n")
    print(f"wrote {SNAPSHOT}")
