"""Model FLOPs utilisation of a 150M-parameter proxy on one GPU, prepared to run as soon as one is lent.

    python benchmarks/proxy_mfu.py                         # on a GPU host: 150M Llama, GPT-2 vocabulary, bf16
    python benchmarks/proxy_mfu.py --device cpu --d-model 64 --layers 2 --steps 3 --batch 2   # a smoke check

MFU = (6 N + 6 L s d) tokens/s / peak bf16 FLOP/s (989.4 TFLOP/s dense for an H100 SXM; --peak-tflops
for another card), N the parameters, measured over `--steps` optimizer steps after `--warmup`. The
model is the `transformers` Llama shape the gpu-small tier uses (the OLMo-core trainer itself needs
its own environment and is not what this measures). Goal: >= 40% for the 150M proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50_304)
    parser.add_argument("--sequence", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.4)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    args = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.d_model,
        intermediate_size=4 * args.d_model,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.sequence,
        tie_word_embeddings=True,
    )
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    model = LlamaForCausalLM(config).to(args.device, dtype=dtype)
    if args.compile:
        model = torch.compile(model)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=args.device != "cpu")
    batch = torch.randint(0, args.vocab, (args.batch, args.sequence + 1), device=args.device)

    def step() -> None:
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, args.vocab), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if args.device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if args.device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = args.steps * args.batch * args.sequence / seconds
    flops_per_token = 6 * parameters + 6 * args.layers * args.sequence * args.d_model
    mfu = flops_per_token * tokens_per_s / (args.peak_tflops * 1e12)
    result = {
        "device": torch.cuda.get_device_name() if args.device != "cpu" else "cpu",
        "parameters": parameters,
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(mfu, 4),
        "goal": 0.40,
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(result))
    if args.device != "cpu":
        write_result("proxy_mfu", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
