"""PNG charts of the corpus table: Zipf curves on log-log axes and KL-to-reference bars."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and in Dagster runs

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dataset_assets.stats.divergence import zipf_exponent  # noqa: E402

POINTS_PER_CURVE = 400  # log-spaced ranks: the curve looks the same and the PNG stays small


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_markdown(name: str, png: bytes) -> str:
    """A PNG inline in a Markdown metadata value (the Dagster UI shows it on the materialisation)."""
    return f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"


def zipf_points(counts: np.ndarray, points: int = POINTS_PER_CURVE) -> tuple[np.ndarray, np.ndarray]:
    """(rank, relative frequency) at log-spaced ranks of the descending frequency list."""
    freq = np.sort(counts[counts > 0])[::-1].astype(np.float64)
    if not len(freq):
        return np.zeros(0), np.zeros(0)
    ranks = np.unique(np.geomspace(1, len(freq), num=min(points, len(freq))).round().astype(np.int64))
    return ranks, freq[ranks - 1] / freq.sum()


def zipf_png(curves: Mapping[str, np.ndarray], kinds: Mapping[str, str] | None = None, title: str = "") -> bytes:
    """One line per corpus, its fitted Zipf exponent in the legend; references dashed so they stand
    apart from the corpora measured against them."""
    kinds = kinds or {}
    fig, ax = plt.subplots(figsize=(10, 6.5))
    colours = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")
    for i, (name, counts) in enumerate(curves.items()):
        ranks, freq = zipf_points(counts)
        if len(ranks):
            style = "--" if kinds.get(name) == "reference" else "-"
            s, _ = zipf_exponent(counts)
            label = f"{name} (s = {s:.2f})" if np.isfinite(s) else name
            ax.loglog(ranks, freq, style, color=colours(i % colours.N), linewidth=1.8, label=label)
    ax.set_title(title or "Zipf curves: token frequency by rank", fontsize=14)
    ax.set_xlabel("rank (log)", fontsize=12)
    ax.set_ylabel("relative frequency (log)", fontsize=12)
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        ax.text(0.5, 0.5, "no tokens counted yet", ha="center", va="center", transform=ax.transAxes, fontsize=12)
    return _png(fig)


def kl_png(bars: Sequence[tuple[str, str, float]], title: str = "") -> bytes:
    """Horizontal bars of KL(reference || corpus), one per corpus, grouped (coloured) by reference.

    `bars` holds (corpus, reference, kl_bits); a corpus against itself is left out (always ~0).
    """
    bars = [(c, r, kl) for c, r, kl in bars if c != r and kl is not None and np.isfinite(kl)]
    corpora = list(dict.fromkeys(c for c, _, _ in bars))
    references = list(dict.fromkeys(r for _, r, _ in bars))
    height = 0.8 / max(len(references), 1)
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.45 * len(corpora) * max(len(references), 1) + 1.5)))
    colours = plt.get_cmap("tab10")
    values = {(c, r): kl for c, r, kl in bars}
    for j, ref in enumerate(references):
        ys = [i + (j - (len(references) - 1) / 2) * height for i in range(len(corpora))]
        xs = [values.get((c, ref), np.nan) for c in corpora]
        drawn = ax.barh(ys, xs, height=height * 0.95, color=colours(j % 10), label=f"reference: {ref}")
        ax.bar_label(drawn, labels=[f"{x:.3f}" if np.isfinite(x) else "" for x in xs], padding=3, fontsize=9)
    ax.set_yticks(range(len(corpora)), corpora, fontsize=11)
    ax.invert_yaxis()
    ax.set_xlabel("KL(reference || corpus), bits (lower = closer to the reference)", fontsize=12)
    title = title or "Unigram KL divergence to each reference"
    ax.set_title(f"{title}\nreference: {references[0]}" if len(references) == 1 else title, fontsize=14)
    ax.margins(x=0.15)
    if len(references) > 1:
        ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    elif not references:
        ax.text(
            0.5, 0.5, "no reference corpus materialised", ha="center", va="center", transform=ax.transAxes, fontsize=12
        )
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def interval_png(points: Sequence[tuple[str, str, float, float, float]], title: str, xlabel: str) -> bytes:
    """Horizontal bars with 95% intervals: (label, group, value, low, high), one colour per group."""
    points = [p for p in points if p[2] is not None and np.isfinite(p[2])]
    labels = list(dict.fromkeys(p[0] for p in points))
    groups = list(dict.fromkeys(p[1] for p in points))
    height = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.45 * len(labels) * max(len(groups), 1) + 1.5)))
    colours = plt.get_cmap("tab10")
    for j, group in enumerate(groups):
        mine = {p[0]: p for p in points if p[1] == group}
        ys = [i + (j - (len(groups) - 1) / 2) * height for i, label in enumerate(labels) if label in mine]
        chosen = [mine[label] for label in labels if label in mine]
        xs = [p[2] for p in chosen]
        err = [[p[2] - p[3] for p in chosen], [p[4] - p[2] for p in chosen]]
        ax.barh(ys, xs, height=height * 0.95, xerr=err, capsize=3, color=colours(j % 10), label=str(group))
    ax.set_yticks(range(len(labels)), labels, fontsize=11)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=12)
    ax.set_title(title, fontsize=13)
    if groups:
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def cluster_sizes_png(sizes: Mapping[int, int], title: str = "Duplicate clusters by size") -> bytes:
    """Number of duplicate clusters per cluster size, each bar labelled with its count; log axes only
    when the sizes or counts span more than a decade or two (a long tail means boilerplate)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if sizes:
        xs = np.array(sorted(sizes), dtype=np.int64)
        ys = np.array([sizes[int(x)] for x in xs])
        wide = xs.max() > 50
        bars = ax.bar(xs, ys, width=np.maximum(xs * 0.15, 0.6) if wide else 0.6, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{y:,}" for y in ys], fontsize=8)
        if wide:
            ax.set_xscale("log")
        if ys.max() > 50 * max(ys.min(), 1):
            ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        if not wide:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_yscale() == "linear":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no duplicate clusters", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("documents in cluster")
    ax.set_ylabel("clusters")
    ax.set_title(title)
    return _png(fig)
