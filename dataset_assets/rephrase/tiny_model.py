"""A tiny random-weight Llama checkpoint for machines without a GPU or a model download.

Its text is noise; the mechanics it exercises (chat templates, batching, sampling, token
accounting, resume) are the real engine's. Needs the `cpu` or `gpu` extra (torch, transformers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dataset_assets import settings


def default_tokenizer_json() -> str:
    return str(settings.GPT2_TOKENIZER)


# Plain role markers, one turn per block; assistant turns end with eos.
# add_generation_prompt appends the "assistant:" header.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] | trim }}\n"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _write_tokenizer(out_dir: str, tokenizer_json: str, max_position_embeddings: int) -> tuple[int, int]:
    """The tokenizer files with the chat template; (eos id, vocabulary size)."""
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tok = PreTrainedTokenizerFast(
        tokenizer_file=tokenizer_json,
        bos_token=eos,
        eos_token=eos,
        pad_token=eos,
        unk_token=eos,
        model_max_length=max_position_embeddings,
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out_dir)
    # Make sure the template sits in tokenizer_config.json too (transformers
    # v5 writes it to chat_template.jinja; vLLM reads either).
    cfg_path = os.path.join(out_dir, "tokenizer_config.json")
    with open(cfg_path) as f:
        tcfg = json.load(f)
    tcfg["chat_template"] = CHAT_TEMPLATE
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # loads in transformers v4 and v5
    with open(cfg_path, "w") as f:
        json.dump(tcfg, f, indent=2, sort_keys=True)
    return tok.convert_tokens_to_ids(eos), len(tok)


def write_tiny_model(
    out_dir: str,
    tokenizer_json: str | None = None,
    seed: int = 0,
    hidden_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 4096,
    dtype: str = "bfloat16",
) -> str:
    """Write config.json, model.safetensors, tokenizer files into out_dir.

    head_dim = hidden_size // num_heads (64 with the defaults; vLLM CPU
    attention rejected head_dim 16). Deterministic for a given seed: the
    safetensors file is byte-identical across runs.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer_json = tokenizer_json or default_tokenizer_json()
    os.makedirs(out_dir, exist_ok=True)

    eos_id, vocab_size = _write_tokenizer(out_dir, tokenizer_json, max_position_embeddings)

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,  # halves disk size
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config.do_sample = True
    model.save_pretrained(out_dir, safe_serialization=True)
    _write_marker(out_dir, seed)
    return out_dir


def _write_marker(out_dir: str, seed: int) -> None:
    """Named as what it is wherever a row records its generator: random weights, not a language model."""
    from resources.default_model import MARKER
    from resources.hashing import file_sha256

    weights = file_sha256(Path(out_dir) / "model.safetensors")
    with open(os.path.join(out_dir, MARKER), "w") as f:
        json.dump(
            {
                "name": "tiny-random-llama",
                "revision": f"seed{seed}-{weights[:12]}",
                "note": "random weights: its text is noise",
            },
            f,
        )
