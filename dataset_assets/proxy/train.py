"""The `cpu-tiny` proxy: a Llama-shaped `transformers` model trained on a mixture's tokens on CPU.

Sequences are windows of `sequence_length + 1` tokens cut from the token stream; each epoch visits
every window once in an order fixed by (seed, epoch), so step `s` always sees the same batch and a
resumed run continues exactly where its checkpoint stopped: it never restarts, never sees a batch
twice, and never counts a token twice. A checkpoint (model, optimizer, step, loss curve) is handed to
`save` every `checkpoint_every` steps and at the end; `resume` is the last one, if any.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from dataset_assets.proxy.spec import ProxySpec


class BudgetTooLarge(ValueError):
    """The token budget repeats the mixture more often than the spec's max_epochs allows."""


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    wall_seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss since the last entry)


@dataclass
class TrainResult:
    state: TrainState
    steps: int
    parameters: int
    flops: float
    epochs: float
    resumed_from: int
    model: object = None


def steps_for(spec: ProxySpec) -> int:
    return max(1, spec.tokens // spec.tokens_per_step())


def epochs_for(spec: ProxySpec, available_tokens: int) -> float:
    """How many times the budget reads the mixture; BudgetTooLarge above the spec's max_epochs."""
    if available_tokens <= spec.sequence_length + 1:
        raise BudgetTooLarge(
            f"the mixture has {available_tokens:,} tokens: fewer than one training sequence of "
            f"{spec.sequence_length + 1}"
        )
    epochs = steps_for(spec) * spec.tokens_per_step() / available_tokens
    if epochs > spec.max_epochs:
        raise BudgetTooLarge(
            f"{spec.path or spec.name}: training.tokens {spec.tokens:,} reads the mixture's {available_tokens:,} "
            f"tokens {epochs:.1f} times, more than training.max_epochs ({spec.max_epochs:g}); lower the budget "
            "(--train-tokens) or raise max_epochs"
        )
    return epochs


def build_model(spec: ProxySpec, vocab_size: int, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_model * spec.mlp_ratio,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.sequence_length + 1,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def learning_rate(spec: ProxySpec, step: int, total: int) -> float:
    warmup = int(spec.warmup_fraction * total)
    if step < warmup:
        return spec.learning_rate * (step + 1) / warmup
    if spec.schedule == "constant":
        return spec.learning_rate
    progress = (step - warmup) / max(1, total - warmup)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Batches:
    """Batch `step` of the run: windows of the stream in a (seed, epoch) order."""

    def __init__(self, tokens: np.ndarray, spec: ProxySpec, seed: int):
        self.tokens, self.spec, self.seed = tokens, spec, seed
        self.windows = (len(tokens) - 1) // spec.sequence_length
        self._order: dict[int, np.ndarray] = {}

    def _order_of(self, epoch: int) -> np.ndarray:
        if epoch not in self._order:
            self._order = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.windows)}
        return self._order[epoch]

    def __call__(self, step: int) -> np.ndarray:
        n, size = self.spec.batch_size, self.spec.sequence_length
        out = np.empty((n, size + 1), dtype=np.int64)
        for b in range(n):
            g = step * n + b
            start = int(self._order_of(g // self.windows)[g % self.windows]) * size
            out[b] = self.tokens[start : start + size + 1]
        return out


def train(
    spec: ProxySpec,
    tokens: np.ndarray,
    vocab_size: int,
    seed: int,
    resume: Optional[dict] = None,
    save: Optional[Callable[[dict], None]] = None,
    on_step: Optional[Callable[[TrainState, int], None]] = None,
) -> TrainResult:
    """Train to the spec's budget (from `resume`, a checkpoint `save` was given, when there is one)."""
    import torch

    epochs = epochs_for(spec, len(tokens))
    torch.set_num_threads(spec.threads)
    model = build_model(spec, vocab_size, seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=spec.weight_decay
    )
    state = TrainState()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        state = TrainState(**resume["state"])
    resumed_from, total, batches = state.step, steps_for(spec), Batches(tokens, spec, seed)
    model.train()
    window, since = [], time.perf_counter()
    while state.step < total:
        batch = torch.from_numpy(batches(state.step))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(spec, state.step, total)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state.step += 1
        state.tokens_seen += spec.tokens_per_step()
        window.append(loss.item())
        if state.step % spec.checkpoint_every == 0 or state.step == total:
            now = time.perf_counter()
            state.wall_seconds += now - since
            since = now
            state.losses.append((state.step, sum(window) / len(window)))
            window = []
            if save is not None:
                save(checkpoint(model, optimizer, state))
        if on_step is not None:
            on_step(state, total)
    parameters = sum(p.numel() for p in model.parameters())
    # 6 N T for the dense layers (forward and backward) plus the attention scores, per Kaplan et al.
    attention = 6 * spec.layers * spec.sequence_length * spec.d_model
    flops = float((6 * parameters + attention) * state.tokens_seen)
    return TrainResult(state, total, parameters, flops, epochs, resumed_from, model)


def checkpoint(model, optimizer, state: TrainState) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": {
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "wall_seconds": state.wall_seconds,
            "losses": [list(x) for x in state.losses],
        },
    }
