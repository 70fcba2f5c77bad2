"""Best of n with the real generator: kept share and generated tokens per kept row at n = 1, 2, 4, and
the rephrase step's output tokens per second against bare `vllm.LLM.chat` with the same n.

    python benchmarks/best_of_n.py --seeds-lake LAKE --shard c4-en-sample-1000.jsonl.gz --docs 16

Reads `seeds` from an existing lake (`dataset-assets run --select crawl_docs,dedup_signatures,
dedup_clusters,quality_classifier,seeds` first). For each strategy and each n, the same kept seeds (the
first `--docs` the strategy routes, by id) go through `rephrase_partition` into a fresh scratch lake
with the strategy's `sampling.n` set to n, on one warm engine (the default generator, SmolLM2-135M-
Instruct, when REPHRASE_MODEL is unset). Reported per (strategy, n): rows, kept rows, kept share, rows a
later sample rescued, samples generated, every generated token (tries included) per kept row, engine
seconds and output tokens per engine second.

Modes (`--modes`): `retry` (the default: one sample at a time, another only for sources whose samples
all failed a row check) and `parallel` (n samples at once, vLLM's `n`), each at every n > 1.

Throughput (`--bare-strategy`, default summary): for each n the asset's partition (parallel mode) is timed against
`LLM.chat(messages, SamplingParams(n=...))` over the same rendered messages on the same `vllm.LLM`
object; the two sides alternate, `--repeats` times each, and the ratio of medians of output tokens per
second is reported (goal >= 0.95x). The asset side includes planning, post-filters, every row check on
every sample and the Parquet commits; the bare side is generation alone.

Writes benchmarks/results/best_of_n.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, machine  # noqa: E402


def with_n(strategy, n: int, mode: str = "parallel"):
    return dataclasses.replace(strategy, sampling=dataclasses.replace(strategy.sampling, n=n, n_mode=mode))


def routed_seeds(seeds: list[dict], strategy, docs: int) -> list[dict]:
    from dataset_assets.rephrase.strategies import routes

    kept = [s for s in sorted(seeds, key=lambda s: s["id"]) if s["kept"]]
    return [s for s in kept if routes(strategy, s["quality_percentile"])][:docs]


def asset_run(engine, strategy, shard: str, seeds: list[dict]) -> dict:
    """One partition into a fresh scratch lake: what it kept and what it cost."""
    from dataset_assets.rephrase.generate import rephrase_partition
    from resources.lake import Lake

    scratch = tempfile.mkdtemp(prefix="best-of-n-")
    try:
        busy, start = engine.busy_seconds, time.monotonic()
        stats = rephrase_partition(Lake(root=scratch), engine, strategy, shard, seeds, chunk_docs=64)
        wall, engine_s = time.monotonic() - start, engine.busy_seconds - busy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "rows": stats.rows,
        "kept": stats.kept,
        "kept_share": round(stats.kept / stats.rows, 3) if stats.rows else 0.0,
        "rescued": stats.rescued,
        "samples": stats.generated_samples,
        "completion_tokens": stats.completion_tokens,
        "generated_tokens_per_kept_row": round(stats.completion_tokens / stats.kept, 1) if stats.kept else None,
        "drops": dict(stats.drops),
        "try_drops": dict(stats.try_drops),
        "engine_seconds": round(engine_s, 1),
        "wall_seconds": round(wall, 1),
        "output_tokens_per_s": round(stats.completion_tokens / wall, 1),
    }


def bare_run(engine, strategy, seeds: list[dict]) -> dict:
    """`LLM.chat` over the messages the asset renders for the same seeds, with the same sampling and n."""
    from vllm import SamplingParams

    from dataset_assets.rephrase.chunks import plan_items
    from dataset_assets.rephrase.strategies import render

    (step,) = strategy.steps
    items = plan_items(seeds, strategy, engine.tokenizer())
    messages = [render(step.messages, {"document": it.text}) for it in items]
    s = strategy.sampling
    params = SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_tokens,
        repetition_penalty=s.repetition_penalty,
        frequency_penalty=s.frequency_penalty,
        n=s.n,
    )
    llm = engine._engine()
    start = time.monotonic()
    outputs = llm.chat(messages, params, use_tqdm=False)
    wall = time.monotonic() - start
    tokens = sum(len(o.token_ids) for out in outputs for o in out.outputs)
    return {"completion_tokens": tokens, "wall_seconds": round(wall, 2), "output_tokens_per_s": round(tokens / wall, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds-lake", required=True)
    parser.add_argument("--shard", default="c4-en-sample-1000.jsonl.gz")
    parser.add_argument("--docs", type=int, default=16, help="kept seeds per strategy (the first it routes, by id)")
    parser.add_argument("--strategies", default="summary,wikipedia,qa")
    parser.add_argument("--n", default="1,2,4")
    parser.add_argument("--modes", default="retry,parallel", help="best-of-n modes measured for each n > 1")
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument("--bare-strategy", default="summary", help="'' skips the throughput comparison")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "best_of_n.json"))
    args = parser.parse_args()

    from dataset_assets.defs.resources import build_engine
    from dataset_assets.rephrase.chunks import with_output_cap
    from dataset_assets.rephrase.strategies import load_strategies
    from resources.lake import Lake

    seeds = (
        Lake(root=args.seeds_lake)
        .read_partition("seeds", {"shard": args.shard}, columns=["id", "text", "kept", "quality_percentile", "lang"])
        .to_pylist()
    )
    strategies = load_strategies()
    ns = [int(n) for n in args.n.split(",")]
    engine = build_engine()
    yields, throughput = {}, {}
    try:
        from resources.llm import ChatRequest

        engine.generate([ChatRequest("warm-up", [{"role": "user", "content": "Hello."}], 8)])  # load outside timing
        for name in args.strategies.split(","):
            base = with_output_cap(strategies[name], args.max_output_tokens)
            chosen = routed_seeds(seeds, base, args.docs)
            for n, mode in [(n, m) for n in ns for m in (args.modes.split(",") if n > 1 else ["-"])]:
                result = asset_run(engine, with_n(base, n, mode if n > 1 else "retry"), args.shard, chosen)
                key = str(n) if n == 1 else f"{n} {mode}"
                yields.setdefault(name, {})[key] = {"documents": len(chosen), **result}
                print(
                    f"{name:10} n={key:11} {result['kept']:3}/{result['rows']:<3} kept ({result['kept_share']:.0%}), "
                    f"{result['rescued']} rescued, {result['generated_tokens_per_kept_row']} generated tokens per "
                    f"kept row, {result['output_tokens_per_s']} tok/s",
                    flush=True,
                )
        if args.bare_strategy:
            base = with_output_cap(strategies[args.bare_strategy], args.max_output_tokens)
            chosen = routed_seeds(seeds, base, args.docs)
            for n in ns:
                runs = {"asset": [], "bare": []}
                for _ in range(args.repeats):
                    runs["asset"].append(asset_run(engine, with_n(base, n), args.shard, chosen)["output_tokens_per_s"])
                    runs["bare"].append(bare_run(engine, with_n(base, n), chosen)["output_tokens_per_s"])
                asset, bare = statistics.median(runs["asset"]), statistics.median(runs["bare"])
                throughput[str(n)] = {**runs, "ratio_of_medians": round(asset / bare, 3)}
                print(f"throughput n={n}: asset {asset} vs bare {bare} tok/s = {asset / bare:.3f}x", flush=True)
    finally:
        engine.close()
    out = {
        "machine": machine(),
        "generator": engine.generator,
        "shard": args.shard,
        "docs": args.docs,
        "max_output_tokens": args.max_output_tokens,
        "yield": yields,
        "throughput": {"strategy": args.bare_strategy, "repeats": args.repeats, "by_n": throughput},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
