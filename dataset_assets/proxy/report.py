"""The leaderboard's inputs from the lake (every stored score, each version's synthetic share, the
statistics' KL of each version to each reference) and its outputs in the lake:

    <lake>/proxy_leaderboard/<recipe>.md, <recipe>-synthetic_share.png, leaderboard.json
"""

from __future__ import annotations

import json

from dataset_assets.mixtures.pull import finished_versions, mixture_names
from dataset_assets.proxy import leaderboard as board
from dataset_assets.proxy import store

ASSET = "proxy_leaderboard"


def synthetic_shares(lake) -> dict[str, float]:
    """mixture@version -> the share of its tokens that are rephrased (1 - the natural component's)."""
    out = {}
    for name in mixture_names(lake):
        for version, manifest in finished_versions(lake, name).items():
            shares = manifest.get("achieved_shares") or {}
            out[f"{name}@{version}"] = 1.0 - float(shares.get("natural", 0.0))
    return out


def corpus_kl(lake) -> dict[tuple[str, str], float]:
    """(mixture@version, reference) -> KL(reference || mixture) in bits, from corpus_stats (if built)."""
    files = lake.all_part_files("corpus_stats")
    if not files:
        return {}
    import pyarrow.parquet as pq

    table = pq.read_table(files[0], filesystem=lake.fs, columns=["corpus", "kind", "reference", "kl_bits"])
    return {
        (r["corpus"], r["reference"]): r["kl_bits"]
        for r in table.to_pylist()
        if r["kind"] == "mixture" and r["reference"] and r["kl_bits"] is not None
    }


def leaderboard_inputs(lake) -> tuple[list[dict], dict, dict]:
    return store.read_evaluations(lake).to_pylist(), synthetic_shares(lake), corpus_kl(lake)


def write_leaderboard(lake, boards: dict) -> dict[str, dict]:
    """Each recipe's Markdown report and plot, and every board as JSON; what was written, by recipe."""
    from dataset_assets.stats.plots import png_markdown

    written = {}
    for recipe, b in boards.items():
        text = board.markdown(recipe, b)
        lake.put_bytes([ASSET, f"{recipe}.md"], text.encode())
        files = {"markdown": text, "path": lake.uri(ASSET, f"{recipe}.md")}
        plot = board.share_png(recipe, b)
        if plot is not None:
            lake.put_bytes([ASSET, f"{recipe}-synthetic_share.png"], plot)
            files["plot_markdown"] = png_markdown(f"{recipe} synthetic share", plot)
        written[recipe] = files
    lake.put_bytes([ASSET, "leaderboard.json"], json.dumps(boards, indent=2, default=str).encode())
    return written
