"""A small fake lake for mixture tests: crawl_docs, seeds and rephrased partitions per the row contracts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa

from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
from dataset_assets.quality.seeds import SEED_SCHEMA
from dataset_assets.rephrase.store import REPHRASED_SCHEMA
from resources.lake import Lake
from tests.conftest import SHARED, english

TOKENIZER = str(SHARED / "tokenizers" / "gpt2-tokenizer.json")
STRATEGIES = ("wikipedia", "qa", "summary")
GENERATOR = "tiny-llama@0000000"


def doc_text(shard: str, i: int) -> str:
    # 1 to 4 paragraphs: documents of different token lengths, as in a real shard.
    return "\n".join(english(i * 10 + k, f"{shard} topic") for k in range(1 + i % 4))


def document_rows(shard: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        text = doc_text(shard, i)
        rows.append(
            {
                "id": f"{shard}-doc{i:03d}",
                "text": text,
                "url": f"http://example.com/{shard}/{i}",
                "shard": shard,
                "crawl": "CC-MAIN-2024-10",
                "lang": "en",
                "lang_score": 0.98,
                "content_hash": hashlib.sha1(text.encode()).hexdigest(),
                "record_key": f"<urn:uuid:{shard}-{i}>",
                "warc_record_id": f"<urn:uuid:{shard}-{i}>",
                "offset": 1000 * i,
                "date": "2024-03-01T00:00:00Z",
                "source_file": f"{shard}.warc.gz",
                "format": "warc",
                "chars": len(text),
                "capped": False,
            }
        )
    return rows


def write_shard(
    lake: Lake, shard: str, n: int = 24, strategies=STRATEGIES, rephrase_every: int = 1, prompt_hash: str = "p1"
) -> None:
    """One crawl shard through seeds (3 of 4 kept) and rephrased (one row per kept seed, 1 in 5 dropped)."""
    docs = document_rows(shard, n)
    lake.write_partition(
        "crawl_docs", {"shard": shard}, pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA).to_batches(), DOCUMENT_SCHEMA
    )
    seeds = [
        {
            **d,
            "quality_score": 0.9,
            "quality_percentile": 95.0,
            "kept": i % 4 != 3,
            "drop_reason": None if i % 4 != 3 else "low_quality",
        }
        for i, d in enumerate(docs)
    ]
    lake.write_partition(
        "seeds", {"shard": shard}, pa.Table.from_pylist(seeds, schema=SEED_SCHEMA).to_batches(), SEED_SCHEMA
    )
    for strategy in strategies:
        write_rephrased(lake, shard, strategy, [s for s in seeds if s["kept"]][::rephrase_every], prompt_hash)


def write_rephrased(
    lake: Lake,
    shard: str,
    strategy: str,
    seeds: list[dict],
    prompt_hash: str = "p1",
    finished: bool = True,
    checks: dict | None = None,
    text_of=None,  # (j, seed) -> a kept row's text, instead of the seed's text under a heading
) -> None:
    rows = []
    for j, seed in enumerate(seeds):
        kept = j % 5 != 4
        text = text_of(j, seed) if text_of else f"{strategy.title()} rewrite. " + seed["text"][: 200 + 40 * (j % 7)]
        rows.append(
            {
                "id": f"{seed['id']}-{strategy}",
                "source_id": seed["id"],
                "shard": shard,
                "strategy": strategy,
                "prompt_hash": f"{strategy}-{prompt_hash}",
                "generator": GENERATOR,
                "sampling": json.dumps({"temperature": 0.7, "top_p": 0.95}),
                "text": text if kept else "",
                "prompt_tokens": 100,
                "completion_tokens": 80,
                "finish_reason": "stop",
                "kept": kept,
                "drop_reason": None if kept else "too_short",
                # What the row checks measure: 0.50-0.59 of the source's words kept; 2 numbers, 1 unsupported
                # in every other row (a rate of 0.25).
                "source_word_share": 0.5 + 0.01 * (j % 10),
                "numbers": 2,
                "unsupported_numbers": j % 2,
            }
        )
    key = {"shard": shard, "strategy": strategy}
    lake.write_partition(
        "rephrased", key, pa.Table.from_pylist(rows, schema=REPHRASED_SCHEMA).to_batches(), REPHRASED_SCHEMA
    )
    if finished:
        # The rephrased asset's completion marker (dataset_assets/rephrase/generate.py writes it last).
        manifest = {"prompt_hash": prompt_hash, "generator": GENERATOR, **({"checks": checks} if checks else {})}
        lake.put_json([*lake.partition_parts("rephrased", key), "_manifest.json"], manifest)


def make_lake(root: Path, shards=("shard-a", "shard-b"), **kwargs) -> Lake:
    lake = Lake(root=str(root))
    for shard in shards:
        write_shard(lake, shard, **kwargs)
    return lake


def write_recipe(directory: Path, name: str = "mix", components=None, **fields) -> Path:
    """A recipe file; `components` is a list of (source, strategy or None, weight)."""
    fields = {
        "description": "test mixture",
        "budget_tokens": 8000,
        "seed": 7,
        "max_repetition": 1.0,
        "shard_rows": 10,
        **fields,
    }
    components = components or [
        ("natural", None, 0.7),
        ("rephrased", "wikipedia", 0.1),
        ("rephrased", "qa", 0.1),
        ("rephrased", "summary", 0.1),
    ]
    lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    for source, strategy, weight in components:
        lines += ["", "[[components]]", f'source = "{source}"', f"weight = {weight}"]
        if strategy:
            lines.append(f'strategy = "{strategy}"')
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
