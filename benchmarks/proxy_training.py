"""The cpu-tiny proxy's training speed against a bare PyTorch loop over the same model and batches.

    python benchmarks/proxy_training.py [--tokens 500000] [--repeats 3]

Each side runs in its own process on one torch thread, alternating, `--repeats` times:
- ours: `dataset_assets.proxy.train.train` as `proxy_models` calls it (learning-rate schedule, loss
  bookkeeping, a checkpoint to a local lake every `checkpoint_every` steps, as the asset writes them);
- bare: the same model (`build_model`), the same batches (`Batches`), AdamW and gradient clipping in a
  plain loop, no checkpoints. Both sides are timed from building the model to the last step, with
  `transformers` already imported (once per process, like any asset run).
Tokens per second (min/median/max over repeats) and peak RSS per side; the ratio of medians is the
goal's number (>= 0.95x). The token stream is the C4 sample shard as UTF-8 bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARD = ROOT.parent / "shared" / "data" / "crawl" / "c4-en-sample-1000.jsonl.gz"


def tokens():
    import numpy as np

    from dataset_assets.proxy.tokens import ByteTokenizer

    with gzip.open(SHARD, "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    tok = ByteTokenizer()
    return np.concatenate([np.append(ids, tok.eos_id) for ids in tok.encode_batch(texts)])


def one(side: str, budget: int) -> dict:
    import torch
    from transformers import LlamaForCausalLM  # noqa: F401  (imported once per process, outside the timing)

    from dataset_assets.proxy import store
    from dataset_assets.proxy.spec import load_spec
    from dataset_assets.proxy.train import Batches, build_model, steps_for, train
    from resources.lake import Lake

    spec = load_spec(ROOT / "proxies" / "cpu-tiny.toml").with_tokens(budget)
    stream = tokens()
    torch.set_num_threads(spec.threads)
    if side == "ours":
        with tempfile.TemporaryDirectory() as root:
            lake, key = Lake(root=root), store.RunKey("bench", "v1", "cpu-tiny", 0)
            start = time.perf_counter()
            result = train(spec, stream, 257, 0, save=lambda state: store.save_checkpoint(lake, key, state))
            seconds = time.perf_counter() - start
        seen = result.state.tokens_seen
    else:
        start = time.perf_counter()  # like `train`, from building the model
        model = build_model(spec, 257, 0)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=spec.weight_decay
        )
        batches, total = Batches(stream, spec, 0), steps_for(spec)
        model.train()
        for step in range(total):
            batch = torch.from_numpy(batches(step))
            logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        seconds = time.perf_counter() - start
        seen = total * spec.tokens_per_step()
    return {
        "side": side,
        "tokens": seen,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(seen / seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    runs = []
    for _ in range(args.repeats):
        for side in ("bare", "ours"):
            done = subprocess.run(
                [sys.executable, __file__, "--one", side, str(args.tokens)], capture_output=True, text=True
            )
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for side in ("bare", "ours"):
        rates = [r["tokens_per_s"] for r in runs if r["side"] == side]
        summary[side] = {
            "min": min(rates),
            "median": statistics.median(rates),
            "max": max(rates),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs if r["side"] == side),
        }
    summary["ratio_of_medians"] = round(summary["ours"]["median"] / summary["bare"]["median"], 3)
    print(json.dumps(summary, indent=2))
    write_result(
        "proxy_training",
        {
            "runs": runs,
            "summary": summary,
            "command": f"python benchmarks/proxy_training.py --tokens {args.tokens} --repeats {args.repeats}",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
