"""The code location: every asset, check, sensor and resource of the graph.

DAGSTER_DEPLOYMENT picks the profile (`local` embedded default, `prod` S3 + Kubernetes + GPUs).
"""

from __future__ import annotations

from dagster import AutomationConditionSensorDefinition, DefaultSensorStatus, Definitions

from dataset_assets import settings
from dataset_assets.assets.crawl import crawl_docs
from dataset_assets.assets.dedup import dedup_buckets, dedup_clusters, dedup_signatures
from dataset_assets.assets.mixtures import mixtures
from dataset_assets.assets.quality import quality_classifier
from dataset_assets.assets.rephrased import rephrased
from dataset_assets.assets.seeds import seeds
from dataset_assets.assets.statistics import (
    corpus_stats,
    natural_unigrams,
    reference_unigrams,
    rephrased_unigrams,
    seed_unigrams,
)
from dataset_assets.deployment import build_engine, build_executor, build_resources
from dataset_assets.nightly import nightly_backfill
from dataset_assets.sensors import crawl_landing_sensor, dedup_seeds_sensor

PROFILE = settings.deployment()

# Assets with an automation condition (new shards flowing downstream) run from this one sensor.
automation = AutomationConditionSensorDefinition(
    "automation", target="*", default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60
)

defs = Definitions(
    assets=[
        crawl_docs,
        dedup_signatures,
        dedup_buckets,
        dedup_clusters,
        quality_classifier,
        seeds,
        rephrased,
        natural_unigrams,
        seed_unigrams,
        rephrased_unigrams,
        reference_unigrams,
        corpus_stats,
        mixtures,
    ],
    sensors=[crawl_landing_sensor, dedup_seeds_sensor, automation, nightly_backfill],
    resources=build_resources(PROFILE),
    executor=build_executor(PROFILE),
)

__all__ = ["defs", "build_engine", "nightly_backfill"]
