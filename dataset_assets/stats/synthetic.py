"""Synthetic-text quality per strategy (and per mixture version), summed from the measures each
`rephrased` partition wrote into its `_manifest.json`, plus one plot a person reads at a glance.

Partition measures are combined with weights: shares by rows, text measures (distinct-n, compression,
faithfulness, formats) by kept rows. distinct-n summed that way is the kept-row-weighted mean of the
partitions' values, not distinct-n over the union (which would need every text again).
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Iterable

ROW_WEIGHTED = ("template_duplicate_share", "repetition_share")
KEPT_WEIGHTED = (
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "distinct_4",
    "mean_compression_ratio",
    "mean_source_word_share",
    "unsupported_number_rate",
)


def strategy_quality(manifests: Iterable[tuple[str, str, dict]]) -> list[dict]:
    """One row per strategy from (shard, strategy, manifest) of finished rephrased partitions."""
    acc: dict[str, dict] = {}
    for _, strategy, manifest in manifests:
        q = manifest.get("quality")
        if not q:
            continue  # written before the checks existed: nothing to sum
        a = acc.setdefault(
            strategy,
            {
                "partitions": 0,
                "rows": 0,
                "kept": 0,
                "kept_tokens": 0,
                "drops": Counter(),
                "formats": Counter(),
                "sums": defaultdict(float),
                "checks": Counter(),
            },
        )
        a["partitions"] += 1
        a["rows"] += q["rows"]
        a["kept"] += q["kept"]
        a["kept_tokens"] += manifest.get("kept_completion_tokens", 0)
        a["drops"].update(q.get("drops", {}))
        for key in ROW_WEIGHTED:
            a["sums"][key] += q.get(key, 0.0) * q["rows"]
        for key in KEPT_WEIGHTED:
            a["sums"][key] += q.get(key, 0.0) * q["kept"]
        for fmt, share in (q.get("formats") or {}).items():
            a["formats"][fmt] += share * q["kept"]
        for verdict in (manifest.get("checks") or {}).values():
            a["checks"][verdict["severity"]] += 1
    rows = []
    for strategy, a in sorted(acc.items()):
        rows.append(
            {
                "strategy": strategy,
                "partitions": a["partitions"],
                "rows": a["rows"],
                "kept": a["kept"],
                "kept_share": round(a["kept"] / a["rows"], 4) if a["rows"] else 0.0,
                "kept_tokens": a["kept_tokens"],
                **{k: round(a["sums"][k] / a["rows"], 4) if a["rows"] else 0.0 for k in ROW_WEIGHTED},
                **{k: round(a["sums"][k] / a["kept"], 4) if a["kept"] else 0.0 for k in KEPT_WEIGHTED},
                "drops": dict(sorted(a["drops"].items())),
                "formats": {k: round(v / a["kept"], 4) for k, v in sorted(a["formats"].items())} if a["kept"] else {},
                "partition_checks": dict(sorted(a["checks"].items())),
            }
        )
    return rows


def mixture_quality(versions: Iterable[tuple[str, str, dict]], by_strategy: dict[str, dict]) -> list[dict]:
    """One row per mixture version: its synthetic components' measures weighted by their token shares."""
    rows = []
    for name, version, manifest in versions:
        shares = manifest.get("achieved_shares", {})
        synthetic = {k: v for k, v in shares.items() if k in by_strategy}
        total = sum(synthetic.values())
        row = {
            "mixture": f"{name}@{version}",
            "synthetic_share": round(total, 4),
            "excluded_partitions": len(manifest.get("excluded_partitions", [])),
        }
        for key in (*ROW_WEIGHTED, *KEPT_WEIGHTED):
            row[key] = round(sum(by_strategy[k][key] * s for k, s in synthetic.items()) / total, 4) if total else 0.0
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rephrased partition carries quality measures yet)"
    lines = [
        "| strategy | kept / rows | kept tokens | distinct-2 | distinct-4 | source words kept | template dup. | "
        "repetition | unsupported numbers | top drops |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(r["drops"].items(), key=lambda kv: -kv[1])[:3]) or "-"
        lines.append(
            f"| {r['strategy']} | {r['kept']} / {r['rows']} ({r['kept_share']:.0%}) | {r['kept_tokens']:,} | "
            f"{r['distinct_2']:.2f} | "
            f"{r['distinct_4']:.2f} | {r['mean_source_word_share']:.2f} | {r['template_duplicate_share']:.1%} | "
            f"{r['repetition_share']:.1%} | {r['unsupported_number_rate']:.1%} | {drops} |"
        )
    return "\n".join(lines)


def quality_png(rows: list[dict], title: str = "") -> bytes:
    """Diversity (distinct-2 of kept text) against faithfulness (share of the source's content words
    kept), one point per strategy, its area proportional to kept tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6.5))
    biggest = max([r["kept_tokens"] for r in rows] + [1])
    xs = [r["mean_source_word_share"] for r in rows]
    ys = [r["distinct_2"] for r in rows]
    # Labels stacked in the order of the points' heights, so points close together stay readable.
    order = sorted(range(len(rows)), key=lambda i: ys[i])
    for rank, i in enumerate(order):
        r = rows[i]
        ax.scatter(xs[i], ys[i], s=60 + 1400 * r["kept_tokens"] / biggest, alpha=0.55)
        ax.annotate(
            f"{r['strategy']} ({r['kept']}/{r['rows']} kept)",
            (xs[i], ys[i]),
            textcoords="offset points",
            xytext=(14, -18 + 14 * rank),
            fontsize=10,
            arrowprops={"arrowstyle": "-", "alpha": 0.4},
        )
    if rows:  # zoom to the points: strategies differ by a few points, not across the whole square
        ax.set_xlim(max(0.0, min(xs) - 0.1), min(1.0, max(xs) + 0.25))
        ax.set_ylim(max(0.0, min(ys) - 0.15), min(1.05, max(ys) + 0.1))
    ax.set_xlabel("faithfulness: share of the source's content words kept", fontsize=12)
    ax.set_ylabel("diversity: distinct 2-grams / all 2-grams (kept rows)", fontsize=12)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Synthetic text per strategy (point area: kept tokens)", fontsize=14)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
