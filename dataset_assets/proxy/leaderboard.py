"""Decisions people can read: mixture versions and sweep points ranked per evaluation set, with the
spread over seeds, and how far to trust the ranking.

- rank: by the mean over seeds (lower bits per byte, higher accuracy), with min..max over seeds;
- decision accuracy (DataDecide): over every pair of mixtures and every pair of seeds (or tiers),
  the share that order the two mixtures the same way; 1.0 means the seeds always agree, 0.5 is a
  coin. A ranking the seeds disagree on is not a result, and the report says so;
- Kang et al.'s plot: each evaluation set's score against the synthetic share of the mixture;
- whether the statistics predict the outcome: the correlation, over mixtures, of the corpus's KL
  to a reference (corpus_stats) with the proxies' bits per byte on that same text.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from typing import Optional

import numpy as np

LOWER_IS_BETTER = {"bits_per_byte", "gold_bits_per_byte"}
_SWEEP = re.compile(r"-syn[0-9.]+$")


def recipe_of(mixture: str) -> str:
    """The recipe a mixture came from: a sweep point `demo-syn30` belongs to `demo`."""
    return _SWEEP.sub("", mixture)


def _better(metric: str, a: float, b: float) -> int:
    if a == b:
        return 0
    return (1 if a < b else -1) if metric in LOWER_IS_BETTER else (1 if a > b else -1)


def scores(rows: list[dict]) -> dict:
    """{(recipe, eval_set, metric, proxy): {mixture@version: {seed: value}}}"""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        key = (recipe_of(r["mixture"]), r["eval_set"], r["metric"], r["proxy"])
        out[key][f"{r['mixture']}@{r['version']}"][r["seed"]] = r["value"]
    return out


def decision_accuracy(by_mixture: dict[str, dict], metric: str) -> Optional[float]:
    """Share of (mixture pair, seed pair) that order the pair the same way; None without two of each."""
    agree = total = 0
    for a, b in itertools.combinations(sorted(by_mixture), 2):
        common = sorted(set(by_mixture[a]) & set(by_mixture[b]))
        for s, t in itertools.combinations(common, 2):
            total += 1
            agree += _better(metric, by_mixture[a][s], by_mixture[b][s]) == _better(
                metric, by_mixture[a][t], by_mixture[b][t]
            )
    return agree / total if total else None


def tier_agreement(means_by_proxy: dict[str, dict[str, float]], metric: str) -> Optional[float]:
    """Between proxies (tiers): the share of mixture pairs both order the same way."""
    agree = total = 0
    for p, q in itertools.combinations(sorted(means_by_proxy), 2):
        common = sorted(set(means_by_proxy[p]) & set(means_by_proxy[q]))
        for a, b in itertools.combinations(common, 2):
            total += 1
            agree += _better(metric, means_by_proxy[p][a], means_by_proxy[p][b]) == _better(
                metric, means_by_proxy[q][a], means_by_proxy[q][b]
            )
    return agree / total if total else None


def ranking(by_mixture: dict[str, dict], metric: str) -> list[dict]:
    entries = []
    for mixture, seeds in by_mixture.items():
        values = list(seeds.values())
        entries.append(
            {
                "mixture": mixture,
                "mean": float(np.mean(values)),
                "low": min(values),
                "high": max(values),
                "seeds": len(values),
            }
        )
    entries.sort(key=lambda e: e["mean"], reverse=metric not in LOWER_IS_BETTER)
    for i, e in enumerate(entries, 1):
        e["rank"] = i
    # The top is settled only if its interval over seeds does not overlap the runner-up's.
    if len(entries) > 1:
        first, second = entries[0], entries[1]
        apart = first["high"] < second["low"] if metric in LOWER_IS_BETTER else first["low"] > second["high"]
        first["separated"] = bool(apart)
    return entries


def correlation(xs: list[float], ys: list[float]) -> Optional[float]:
    """Pearson's r; None for fewer than three points or no spread."""
    if len(xs) < 3 or np.std(xs) == 0 or np.std(ys) == 0:
        return None
    return float(np.corrcoef(xs, ys)[0, 1])


def leaderboard(rows: list[dict], shares: dict[str, float], kl: dict[tuple[str, str], float]) -> dict:
    """Per recipe: per (evaluation set, metric, proxy) the ranking, decision accuracy between seeds,
    and the points of the synthetic-share plot; per (evaluation set, metric) the agreement between
    proxies; and the KL/bits-per-byte correlation. `shares`: mixture@version -> synthetic share;
    `kl`: (mixture@version, reference) -> KL bits."""
    out: dict = defaultdict(lambda: {"boards": [], "tiers": [], "kl_correlation": []})
    table = scores(rows)
    means: dict = defaultdict(dict)
    for (recipe, eval_set, metric, proxy), by_mixture in sorted(table.items()):
        board = ranking(by_mixture, metric)
        means[(recipe, eval_set, metric)][proxy] = {e["mixture"]: e["mean"] for e in board}
        points = [(shares.get(m), s, v) for m, seeds in by_mixture.items() for s, v in seeds.items()]
        out[recipe]["boards"].append(
            {
                "eval_set": eval_set,
                "metric": metric,
                "proxy": proxy,
                "ranking": board,
                "decision_accuracy_seeds": decision_accuracy(by_mixture, metric),
                "share_points": sorted(p for p in points if p[0] is not None),
            }
        )
        if metric == "bits_per_byte":
            pairs = [(kl[(e["mixture"], eval_set)], e["mean"]) for e in board if (e["mixture"], eval_set) in kl]
            out[recipe]["kl_correlation"].append(
                {
                    "eval_set": eval_set,
                    "proxy": proxy,
                    "mixtures": len(pairs),
                    "pearson_r": correlation([p[0] for p in pairs], [p[1] for p in pairs]),
                }
            )
    for (recipe, eval_set, metric), by_proxy in sorted(means.items()):
        if len(by_proxy) > 1:
            out[recipe]["tiers"].append(
                {"eval_set": eval_set, "metric": metric, "decision_accuracy_tiers": tier_agreement(by_proxy, metric)}
            )
    return dict(out)


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _why_no_r(r: Optional[float], mixtures: int) -> str:
    if r is not None:
        return ""
    return " (needs three mixtures)" if mixtures < 3 else " (no spread in KL or bits per byte)"


def markdown(recipe: str, board: dict) -> str:
    lines = [f"# Proxy leaderboard: {recipe}", ""]
    for b in board["boards"]:
        direction = "lower is better" if b["metric"] in LOWER_IS_BETTER else "higher is better"
        da = b["decision_accuracy_seeds"]
        verdict = (
            "one seed: no interval, no decision accuracy"
            if da is None
            else "the seeds agree on every pair"
            if da == 1.0
            else f"the seeds disagree on {1 - da:.0%} of the pairs: not a result on its own"
        )
        lines += [
            f"## {b['eval_set']}: {b['metric']} ({direction}), {b['proxy']}",
            "",
            f"Decision accuracy between seeds: {_fmt(da, 2)} ({verdict}).",
            "",
            "| rank | mixture | mean | seeds' range | seeds |",
            "|---|---|---|---|---|",
        ]
        for e in b["ranking"]:
            mark = " (ahead beyond the seeds' range)" if e.get("separated") else ""
            lines.append(
                f"| {e['rank']} | {e['mixture']}{mark} | {_fmt(e['mean'], 4)} | "
                f"{_fmt(e['low'], 4)}..{_fmt(e['high'], 4)} | {e['seeds']} |"
            )
        lines.append("")
    for t in board["tiers"]:
        lines.append(
            f"Agreement between proxies on {t['eval_set']} {t['metric']}: {_fmt(t['decision_accuracy_tiers'], 2)}"
        )
    for c in board["kl_correlation"]:
        r = c["pearson_r"]
        lines.append(
            f"KL to {c['eval_set']} against {c['proxy']}'s bits per byte over {c['mixtures']} mixtures: "
            f"r = {_fmt(r, 2)}" + _why_no_r(r, c["mixtures"])
        )
    return "\n".join(lines).rstrip() + "\n"


def share_png(recipe: str, board: dict) -> Optional[bytes]:
    """Kang et al.'s plot: bits per byte on each text set against the synthetic share, one point per seed."""
    from dataset_assets.stats.plots import _png, plt

    series = [b for b in board["boards"] if b["metric"] == "bits_per_byte" and b["share_points"]]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for b in series:
        xs, _, ys = zip(*b["share_points"])
        ax.scatter([100 * x for x in xs], ys, s=14, label=f"{b['eval_set']} ({b['proxy']})")
        by_share: dict = defaultdict(list)
        for x, y in zip(xs, ys):
            by_share[x].append(y)
        line = sorted((100 * x, float(np.mean(v))) for x, v in by_share.items())
        ax.plot([p[0] for p in line], [p[1] for p in line], linewidth=1)
    ax.set_xlabel("synthetic share of the mixture (%)")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title(f"{recipe}: evaluation loss against the synthetic share")
    ax.legend(fontsize=7)
    return _png(fig)
