"""Every strategy through the real generator on one shard's kept seeds: kept share, drops by reason,
output tokens per kept row and a short real example of each, for the README's strategy table.

    python benchmarks/strategy_survey.py --seeds-lake data/lake --shard c4-en-sample-1000.jsonl.gz --docs 24

Reads `seeds` from an existing lake (run `dataset-assets run --select crawl_docs,quality_classifier,seeds`
first), writes the rephrased rows to a scratch lake (default /tmp/strategy-survey) and the summary to
benchmarks/results/strategy_survey.json. With REPHRASE_MODEL unset the engine is the default
generator (SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds-lake", required=True)
    parser.add_argument("--shard", required=True)
    parser.add_argument("--docs", type=int, default=24, help="kept seeds per strategy (the first by id)")
    parser.add_argument("--strategies", help="comma-separated (default: every prompts/*.toml)")
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument("--out-lake", default="/tmp/strategy-survey")
    parser.add_argument("--prompts", default=None)
    args = parser.parse_args()

    from dataset_assets.defs.resources import build_engine
    from dataset_assets.rephrase.chunks import with_output_cap
    from dataset_assets.rephrase.generate import rephrase_partition
    from dataset_assets.rephrase.strategies import load_strategies
    from resources.lake import Lake

    seeds_lake, out_lake = Lake(root=args.seeds_lake), Lake(root=args.out_lake)
    seeds = seeds_lake.read_partition(
        "seeds", {"shard": args.shard}, columns=["id", "text", "kept", "quality_percentile", "lang"]
    ).to_pylist()
    strategies = load_strategies(args.prompts)
    chosen = args.strategies.split(",") if args.strategies else sorted(strategies)
    engine = build_engine()
    results = {}
    try:
        for name in chosen:
            strategy = with_output_cap(strategies[name], args.max_output_tokens)
            routed = [s for s in sorted(seeds, key=lambda s: s["id"]) if s["kept"]]
            from dataset_assets.rephrase.strategies import routes

            routed = [s for s in routed if routes(strategy, s["quality_percentile"])][: args.docs]
            start = time.monotonic()
            stats = rephrase_partition(out_lake, engine, strategy, args.shard, routed, chunk_docs=64)
            rows = out_lake.read_partition("rephrased", {"shard": args.shard, "strategy": name}).to_pylist()
            kept = [r for r in rows if r["kept"]]
            example = min(kept, key=lambda r: len(r["text"]))["text"] if kept else ""
            results[name] = {
                "documents": len(routed),
                "rows": stats.rows,
                "kept": stats.kept,
                "kept_share": round(stats.kept / stats.rows, 3) if stats.rows else 0.0,
                "drops": dict(stats.drops),
                "output_tokens_per_kept_row": round(sum(r["completion_tokens"] for r in kept) / len(kept), 1)
                if kept
                else 0.0,
                "completion_tokens": stats.completion_tokens,
                "seconds": round(time.monotonic() - start, 1),
                "quality": stats.quality,
                "checks": {k: v["severity"] for k, v in stats.checks.items()},
                "example": example[:400],
            }
            print(
                f"{name:18} {stats.kept:3}/{stats.rows:<3} kept  drops {dict(stats.drops)}  "
                f"{results[name]['output_tokens_per_kept_row']} tok/kept row  {results[name]['seconds']} s",
                flush=True,
            )
    finally:
        engine.close()
    out = {
        "machine": machine(),
        "generator": engine.generator,
        "shard": args.shard,
        "docs": args.docs,
        "max_output_tokens": args.max_output_tokens,
        "strategies": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "strategy_survey.json").write_text(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
