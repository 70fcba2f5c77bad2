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


def recipes_dir() -> str:
    return os.environ.get("MIXTURE_RECIPES") or str(PROJECT_ROOT / "recipes")


def references_dir() -> str:
    return os.environ.get("STATS_REFERENCES") or str(PROJECT_ROOT.parent / "shared" / "data" / "reference")
