"""What every command sets up first: the environment the definitions read when they load, the
default generator, and a lake resource from `--lake`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dataset_assets import settings


def prepare_environment(args: argparse.Namespace) -> None:
    if args.landing:
        os.environ["CRAWL_LANDING"] = args.landing if "://" in args.landing else str(Path(args.landing).resolve())
    if args.lake:
        os.environ["DATASET_LAKE"] = args.lake if "://" in args.lake else str(Path(args.lake).resolve())
    # Partition sets built from folders are read when the definitions load: set them first.
    if getattr(args, "references", None):
        os.environ["STATS_REFERENCES"] = str(Path(args.references).resolve())
    if getattr(args, "recipes", None):
        os.environ["MIXTURE_RECIPES"] = str(Path(args.recipes).resolve())
    home = Path(settings.dagster_home())
    os.environ["DAGSTER_HOME"] = str(home)  # Dagster reads it from the environment
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # No network here and none needed: keep the instance from trying to send telemetry.
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def prepare_default_model() -> None:
    """Prepare the default generator before the definitions load, so the statistics tokenizer (the
    generator's own when it is local) is the same in every run of this command."""
    if settings.uses_default_model() and settings.rephrase_engine() == "vllm":
        from resources.default_model import prepare_model

        prepare_model(settings.default_model_dir())


def lake_from(args: argparse.Namespace):
    from dataset_assets.defs.resources import lake_resource

    return lake_resource(args.lake)


class InstanceUnavailable(Exception):
    """The Dagster instance's storage (Postgres in the prod profile) cannot be reached."""


def open_instance():
    """DAGSTER_HOME's instance, or `InstanceUnavailable` naming the storage and the cause when its
    database cannot be reached (dagster-postgres retries for about 15 s first)."""
    from dagster import DagsterInstance

    try:
        return DagsterInstance.get()
    except Exception as exc:
        chain, cause = [], exc
        while cause is not None:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        names = {type(e).__name__ for e in chain}
        if not names & {"DagsterPostgresException", "OperationalError"}:
            raise
        root = str(chain[-1]).strip().splitlines()[0] if str(chain[-1]).strip() else type(chain[-1]).__name__
        raise InstanceUnavailable(
            f"the Dagster instance at {settings.dagster_home()} cannot reach its database ({root}); nothing was "
            "run. Start the database or fix its settings (DAGSTER_PG_HOST, DAGSTER_PG_PORT, ... in dagster.yaml)"
        ) from None
