"""`dataset-assets`: run the graph through Dagster's own execution without a daemon."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from dataset_assets import settings

# Stages in dependency order; partitioned stages run once per shard.
STAGES = [("crawl_docs", True), ("quality_classifier", False), ("seeds", True)]


def _prepare_environment(args: argparse.Namespace) -> None:
    if args.landing:
        os.environ["CRAWL_LANDING"] = args.landing if "://" in args.landing else str(Path(args.landing).resolve())
    if args.lake:
        os.environ["DATASET_LAKE"] = args.lake if "://" in args.lake else str(Path(args.lake).resolve())
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(settings.PROJECT_ROOT / "data" / "dagster_home")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # No network here and none needed: keep the instance from trying to send telemetry.
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def register_shards(instance, landing) -> list[str]:
    """Add a partition for every shard file in the landing location; returns all shard keys there."""
    from dataset_assets.partitions import crawl_shards

    keys = sorted(landing.files())
    known = set(instance.get_dynamic_partitions(crawl_shards.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(crawl_shards.name, new)
    return keys


def cmd_run(args: argparse.Namespace) -> int:
    _prepare_environment(args)
    from dagster import AssetKey, DagsterInstance

    definitions = importlib.import_module("dataset_assets.definitions")
    defs = definitions.defs
    instance = DagsterInstance.get()
    landing = defs.resources["landing"]
    keys = register_shards(instance, landing)
    selected = [s.strip() for s in args.select.split(",")] if args.select else [name for name, _ in STAGES]
    unknown = [s for s in selected if s not in dict(STAGES)]
    if unknown:
        print(f"unknown asset(s) {unknown}; known: {[n for n, _ in STAGES]}", file=sys.stderr)
        return 2
    print(f"landing {os.environ['CRAWL_LANDING']}: {len(keys)} shards; lake {os.environ['DATASET_LAKE']}")
    job = defs.resolve_implicit_global_asset_job_def()
    failures = []
    for name, partitioned in STAGES:
        if name not in selected:
            continue
        for key in keys if partitioned else [None]:
            label = f"{name}[{key}]" if key else name
            start = time.monotonic()
            result = job.execute_in_process(
                instance=instance,
                partition_key=key,
                asset_selection=[AssetKey(name)],
                raise_on_error=False,
                tags={"dagster/from": "dataset-assets cli"},
                run_config={"loggers": {"console": {"config": {"log_level": args.log_level}}}},
            )
            status = "ok" if result.success else "FAILED"
            print(f"{status:6} {label} ({time.monotonic() - start:.1f} s, run {result.run_id[:8]})", flush=True)
            if not result.success:
                failures.append(label)
                for event in result.all_events:
                    if event.is_failure and event.event_specific_data and getattr(event.event_specific_data, "error", None):
                        print(f"       {event.event_specific_data.error.message.strip().splitlines()[0]}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} step(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataset-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="register landing shards and materialise the selected assets")
    run.add_argument("--landing", help="landing location: directory or s3://bucket/prefix (default CRAWL_LANDING)")
    run.add_argument("--lake", help="lake root: directory or s3://bucket/prefix (default DATASET_LAKE)")
    run.add_argument("--select", help="comma-separated assets (default: all)")
    run.add_argument("--log-level", default="INFO", help="Dagster console log level (DEBUG shows every event)")
    run.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
