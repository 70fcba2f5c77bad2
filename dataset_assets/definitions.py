"""The code location: every asset, check, sensor and resource of the graph."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from dataset_assets import settings
from dataset_assets.assets.crawl import crawl_docs
from dataset_assets.assets.quality import quality_classifier
from dataset_assets.assets.seeds import seeds
from dataset_assets.sensors import crawl_landing_sensor
from resources.lake import Lake
from resources.landing import CrawlLanding


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


def build_resources() -> dict:
    s3 = _s3_options()
    return {
        "lake": Lake(root=settings.lake_root(), **s3),
        "landing": CrawlLanding(location=settings.landing_location(), **s3),
    }


defs = Definitions(
    assets=[crawl_docs, quality_classifier, seeds],
    sensors=[crawl_landing_sensor],
    resources=build_resources(),
)
