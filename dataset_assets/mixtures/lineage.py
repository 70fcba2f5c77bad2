"""Lineage: a mixture row back through its rephrased row and seed to the crawl record it came from."""

from __future__ import annotations

from typing import Optional

import pyarrow.compute as pc
import pyarrow.dataset as pads

from dataset_assets.mixtures.pull import MIXTURES, parquet_files, resolve
from dataset_assets.mixtures.upstream import partition_version
from resources.lake import Lake

PREVIEW_CHARS = 160
_CRAWL_FIELDS = (
    "id",
    "url",
    "shard",
    "crawl",
    "warc_record_id",
    "offset",
    "record_key",
    "date",
    "source_file",
    "format",
)


def _find(lake: Lake, files: list[str], row_id: str) -> Optional[dict]:
    if not files:
        return None
    table = pads.dataset(files, filesystem=lake.fs, format="parquet").to_table(filter=pc.field("id") == row_id)
    return table.slice(0, 1).to_pylist()[0] if table.num_rows else None


def _preview(text: Optional[str]) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _changed_note(lake: Lake, manifest: dict, asset: str, key: dict[str, str]) -> dict:
    """Flags an upstream partition rewritten since the mixture was built (its rows may differ now)."""
    recorded = next(
        (u["data_version"] for u in manifest["upstream"] if u["asset"] == asset and u["partition"] == key), None
    )
    if recorded is None:
        return {}
    now = partition_version(lake, asset, key, lake.partition_files(asset, key))
    return (
        {}
        if now == recorded
        else {"note": f"{asset} partition changed since this version (data version {recorded} then, {now} now)"}
    )


def _rephrased_step(lake: Lake, manifest: dict, row: dict) -> dict:
    key = {"shard": row["shard"], "strategy": row["component"]}
    found = _find(lake, lake.partition_files("rephrased", key), row["rephrased_id"])
    fields = ("id", "source_id", "shard", "strategy", "prompt_hash", "generator", "finish_reason", "completion_tokens")
    step = (
        {k: found.get(k) for k in fields}
        if found
        else {"id": row["rephrased_id"], "missing": "not in the lake any more"}
    )
    if found:
        step["text"] = _preview(found["text"])
    return {"level": "rephrased", **step, **_changed_note(lake, manifest, "rephrased", key)}


def trace(lake: Lake, mixture: str, row_id: str) -> list[dict]:
    """[mixture row, rephrased row (synthetic rows only), seed, crawl record], each a dict with `level`."""
    name, version, manifest = resolve(lake, mixture)
    row = _find(lake, [lake.path(MIXTURES, name, version, f) for f in parquet_files(manifest)], row_id)
    if row is None:
        raise LookupError(f"mixture {name}@{version} has no row with id {row_id!r}")
    shard = row["shard"]
    chain = [
        {
            "level": "mixture",
            "mixture": f"{name}@{version}",
            **{
                k: row[k]
                for k in ("id", "component", "shard", "source_id", "seed_id", "rephrased_id", "tokens", "repeat")
            },
            "text": _preview(row["text"]),
        }
    ]
    if row["rephrased_id"]:
        chain.append(_rephrased_step(lake, manifest, row))
    seed = _find(lake, lake.partition_files("seeds", {"shard": shard}), row["seed_id"])
    if seed is None:
        chain.append({"level": "seed", "id": row["seed_id"], "shard": shard, "missing": "not in the lake any more"})
    else:
        fields = ("id", "shard", "url", "quality_score", "quality_percentile", "kept")
        step = {k: seed.get(k) for k in fields}
        chain.append(
            {
                "level": "seed",
                **step,
                "text": _preview(seed["text"]),
                **_changed_note(lake, manifest, "seeds", {"shard": shard}),
            }
        )
    crawl = _find(lake, lake.partition_files("crawl_docs", {"shard": shard}), row["seed_id"])
    if crawl is not None:
        chain.append({"level": "crawl", **{k: crawl.get(k) for k in _CRAWL_FIELDS}})
    elif seed is not None:
        # Seeds carry every crawl_docs column, so the record is known even if crawl_docs was rewritten.
        step = {k: seed.get(k) for k in _CRAWL_FIELDS}
        chain.append({"level": "crawl", **step, "note": "from the seed row; crawl_docs no longer holds it"})
    return chain


def format_trace(chain: list[dict]) -> str:
    lines = []
    for step in chain:
        fields = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in step.items()
            if k not in ("level", "text") and v is not None
        }
        lines.append(f"{step['level']:<10}" + "  ".join(f"{k}={v}" for k, v in fields.items()))
        if step.get("text"):
            lines.append(f"{'':<10}{step['text']!r}")
    return "\n".join(lines)


def cmd_lineage(lake: Lake, spec: str, row_id: str) -> str:
    """`dataset-assets lineage ROW_ID --mixture NAME@VERSION`."""
    return format_trace(trace(lake, spec, row_id))
