"""One proxy run, without Dagster: train (or resume, or reuse a finished run) on a tokenized mixture
version, then score the trained model on every evaluation set and store the rows.

A run is identified by what it trains on and how: the token manifest's checksum and the spec's
digest. A checkpoint or finished run of another identity (an edited spec, a re-tokenized mixture)
is never resumed from: the run starts over and replaces it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from dataset_assets.proxy import metrics, store
from dataset_assets.proxy.spec import ProxySpec
from dataset_assets.proxy.tokens import load_tokenizer, load_tokens
from dataset_assets.proxy.train import TrainState, build_model, train


@dataclass
class RunOutcome:
    record: dict  # run.json
    reused: bool
    resumed_from: int


def identity(spec: ProxySpec, tokens_manifest: dict) -> dict:
    return {"spec_digest": spec.digest(), "tokens_manifest_sha256": store.manifest_digest(tokens_manifest)}


def train_run(
    lake,
    key: store.RunKey,
    spec: ProxySpec,
    tokens_manifest: dict,
    on_step: Optional[Callable[[TrainState, int], None]] = None,
) -> RunOutcome:
    """The finished run of this identity, else training from the last checkpoint of this identity."""
    ident = identity(spec, tokens_manifest)
    done = store.finished_run(lake, key)
    if done is not None and all(done.get(k) == v for k, v in ident.items()):
        return RunOutcome(done, True, done["steps"])
    checkpoint = store.load_checkpoint(lake, key)
    if checkpoint is not None and checkpoint.get("identity") != ident:
        checkpoint = None  # another spec or other tokens: never resumed from
    with tempfile.TemporaryDirectory() as tmp:
        tokens = load_tokens(lake, tokens_manifest, tmp)

    def save(state: dict) -> None:
        store.save_checkpoint(lake, key, {**state, "identity": ident})

    start = time.time()
    result = train(spec, tokens, tokens_manifest["vocab_size"], key.seed, checkpoint, save, on_step)
    record = {
        **ident,
        "mixture": key.mixture,
        "version": key.version,
        "proxy": key.proxy,
        "tier": spec.tier,
        "seed": key.seed,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items() if k != "path"},
        "tokenizer": tokens_manifest["tokenizer"],
        "mixture_tokens": tokens_manifest["tokens"],
        "epochs": round(result.epochs, 3),
        "steps": result.steps,
        "tokens_seen": result.state.tokens_seen,
        "train_seconds": round(result.state.wall_seconds, 2),
        "tokens_per_second": round(result.state.tokens_seen / max(result.state.wall_seconds, 1e-9), 1),
        "parameters": result.parameters,
        "flops": result.flops,
        "loss_curve": [list(p) for p in result.state.losses],
        "resumed_from_step": result.resumed_from,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_seconds": round(time.time() - start, 2),
    }
    store.write_run(lake, key, record)
    return RunOutcome(record, False, result.resumed_from)


def trained_model(lake, key: store.RunKey, spec: ProxySpec, vocab_size: int):
    checkpoint = store.load_checkpoint(lake, key)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint of {key.spec} {key.proxy} seed {key.seed}: train it first")
    model = build_model(spec, vocab_size, key.seed)
    model.load_state_dict(checkpoint["model"])
    return model


def evaluate_run(
    lake, key: store.RunKey, spec: ProxySpec, record: dict, eval_sets: list, gpt2_path: str = ""
) -> list[dict]:
    """Score the run's model on every set and store one row per (set, metric)."""
    import torch

    torch.set_num_threads(spec.threads)
    tokenizer = load_tokenizer(spec.tokenizer, gpt2_path)
    model = trained_model(lake, key, spec, tokenizer.vocab_size)
    base = {
        "mixture": key.mixture,
        "version": key.version,
        "proxy": key.proxy,
        "tier": spec.tier,
        "seed": key.seed,
        "train_tokens": record["tokens_seen"],
        "spec_digest": record["spec_digest"],
        "tokens_manifest_sha256": record["tokens_manifest_sha256"],
        "parameters": record["parameters"],
        "flops": record["flops"],
    }
    rows = []
    for s in eval_sets:
        if s.kind == "text":
            scored = metrics.bits_per_byte(model, tokenizer, s.documents, spec.sequence_length, spec.bytes_per_set)
            rows.append({**base, "eval_set": s.name, "metric": "bits_per_byte", "value": scored["bits_per_byte"]})
        elif s.kind == "pairs" and spec.blimp_pairs:
            scored = metrics.minimal_pairs(model, tokenizer, s.pairs, spec.sequence_length, spec.blimp_pairs)
            rows.append({**base, "eval_set": s.name, "metric": "accuracy", "value": scored["accuracy"]})
            rows.append({**base, "eval_set": s.name, "metric": "margin_bits", "value": scored["margin_bits"]})
        elif s.kind == "choices" and spec.choice_questions:
            scored = metrics.multiple_choice(model, tokenizer, s.questions, spec.sequence_length, spec.choice_questions)
            rows += [{**base, "eval_set": s.name, "metric": m, "value": scored[m]} for m in metrics.CHOICE_METRICS]
    store.write_evaluations(lake, key, rows)
    return rows
