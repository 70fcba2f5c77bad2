"""`dataset-assets run`, `status` and `catalog`: the graph through Dagster's own execution, and
what the lake's status catalog says, without a daemon."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from dataset_assets import settings
from dataset_assets.cli.environment import (
    InstanceUnavailable,
    lake_from,
    open_instance,
    prepare_default_model,
    prepare_environment,
)


def cmd_run(args: argparse.Namespace) -> int:
    """Ctrl-C (SIGINT) or SIGTERM stops the run at once: the step in flight is left uncommitted, nothing
    further starts, the summary says what finished and what did not, and the exit code is 130 / 143."""
    from dataset_assets.orchestration.stop_signals import Interrupted, StopSignals

    runners: list = []  # the StageRunner, once the steps begin
    with StopSignals() as stop:
        try:
            return _run(args, stop, runners)
        except Interrupted as signal:
            summary = runners[0].stopped_summary(signal) if runners else f"stopped by {signal.name} before any step ran"
            print(summary, file=sys.stderr, flush=True)
            return signal.exit_code


def _run(args: argparse.Namespace, stop, runners: list) -> int:
    prepare_environment(args)
    try:
        instance = open_instance()  # before anything slow: an unreachable database stops the run here
    except InstanceUnavailable as exc:
        print(f"run stopped before any step: {exc}", file=sys.stderr)
        return 1
    if not args.select or "rephrased" in args.select:
        from resources.default_model import ModelPreparationError

        try:
            prepare_default_model()
        except ModelPreparationError as exc:
            print(f"default generator: {exc}", file=sys.stderr)
            return 1

    from dataset_assets.orchestration.runner import STAGES, StageRunner, register_shards
    from dataset_assets.rephrase.strategies import load_strategies

    defs = importlib.import_module("dataset_assets.definitions").defs
    keys = register_shards(instance, defs.resources["landing"], defs.resources["lake"])
    if keys is None:
        return 1
    stage_names = [name for name, _ in STAGES]
    selected = [s.strip() for s in args.select.split(",")] if args.select else stage_names
    unknown = [s for s in selected if s not in stage_names]
    if unknown:
        print(f"unknown asset(s) {unknown}; known: {stage_names}", file=sys.stderr)
        return 2
    strategies = load_strategies(settings.prompts_dir())
    chosen = [s.strip() for s in args.strategies.split(",")] if args.strategies else sorted(strategies)
    missing = [s for s in chosen if s not in strategies]
    if missing:
        print(f"unknown strategy(ies) {missing}; prompts/ has: {sorted(strategies)}", file=sys.stderr)
        return 2
    print(f"landing {settings.landing_location()}: {len(keys)} partitions; lake {settings.lake_root()}")
    try:
        _ensure_catalog(defs.resources["lake"])
    except OSError as exc:  # an unreachable lake: each step below fails and is named with its cause
        print(f"could not check the lake's status catalog: {str(exc).splitlines()[0]}", file=sys.stderr)
    runner = StageRunner(defs, instance, args.log_level, keys, stop)
    runners.append(runner)
    runner.run(
        [name for name in stage_names if name in selected], strategies, chosen, args.chunk_docs, args.max_output_tokens
    )
    if runner.failures:
        print(f"{len(runner.failures)} step(s) failed: {', '.join(runner.failures)}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Per asset: partitions current, outdated (and why) and missing, by the computation the nightly
    backfill launches from. Reads the lake and the instance's registered shards; changes nothing."""
    from dataset_assets.status.catalog import CatalogDamaged

    try:
        return _status(args)
    # A damaged catalog, an unreachable lake, landing or instance:
    except (CatalogDamaged, OSError, InstanceUnavailable) as exc:
        print(f"status failed: {exc}", file=sys.stderr)
        return 1


def _status(args: argparse.Namespace) -> int:
    prepare_environment(args)
    from dataset_assets.orchestration.graph import crawl_shards, dedup_bands
    from dataset_assets.rephrase.strategies import load_strategies
    from dataset_assets.status.judge import graph_status, landing_view, render

    defs = importlib.import_module("dataset_assets.definitions").defs
    lake = defs.resources["lake"]
    _ensure_catalog(lake)
    registered = open_instance().get_dynamic_partitions(crawl_shards.name)
    looked, why, landed = _landed_files(lake)
    view = landing_view(lake, registered, landed)
    status = graph_status(
        lake,
        view.shards,
        load_strategies(settings.prompts_dir()),
        _generator(defs),
        dedup_bands.get_partition_keys(),
        args.max_output_tokens,
        registry=view.registry,
    )
    facts = {
        "shards": len(view.shards),
        "unregistered_shards": len(view.unregistered),
        "registered_without_file": len(view.gone),
        "registered_without_file_sample": view.gone[:10],
        "landings": looked,
        "landings_from": why,
    }
    if args.json:
        print(json.dumps({**facts, "assets": {name: st.summary() for name, st in status.items()}}, indent=2))
        return 0
    print(
        f"{facts['shards']} shards ({facts['unregistered_shards']} in the landing but not registered yet); "
        f"lake {settings.lake_root()}"
    )
    print(f"landing: {', '.join(looked)} ({why})")
    if view.gone:
        shown = ", ".join(view.gone[:5]) + (" ..." if len(view.gone) > 5 else "")
        print(
            f"{len(view.gone)} registered shards have no file in the landing any more ({', '.join(looked)}: moved or "
            f"deleted; their crawl_docs cannot be rebuilt until it is back): {shown}. If the files moved on purpose, "
            "point status and runs at the new place: --landing NEW or CRAWL_LANDING=NEW"
        )
    print(render(status))
    return 0


def _landed_files(lake) -> tuple[list[str], str, list[str]]:
    """(the landings status lists, why those, the files in them): the landing the user names, else the
    ones the lake's files were registered from (status/landings.py), else the default."""
    from dataset_assets.defs.resources import landing_resource
    from dataset_assets.status import landings

    looked, why = landings.to_judge_against(settings.landing_location() if settings.landing_is_set() else None, lake)
    if not looked:
        looked, why = [settings.landing_location()], "the default: no landing recorded in the lake"
    return looked, why, [f for location in looked for f in landing_resource(location).files()]


def _generator(defs) -> str:
    if settings.uses_default_model() and settings.rephrase_engine() == "vllm":
        from resources.default_model import DEFAULT_REVISION, MODEL_NAME

        return f"{MODEL_NAME}@{DEFAULT_REVISION}"  # what its preparation will name it: no 30 s conversion to ask
    return defs.resources["engine"].generator


def _ensure_catalog(lake) -> None:
    """A lake written before it had a status catalog gets one now, from the lake itself (once)."""
    from dataset_assets.status import catalog

    if not catalog.needs_rebuild(lake):
        return
    print(f"the lake at {lake.uri()} has no status catalog yet: building it from the lake (once)", flush=True)
    written = catalog.rebuild(lake, log=lambda message: print(message, flush=True))
    print(f"status catalog: {written:,} partitions recorded", flush=True)


def cmd_catalog(args: argparse.Namespace) -> int:
    """The status catalog: rebuild it from the lake, verify it against the lake, or compact it."""
    from dataset_assets.status import catalog

    lake = lake_from(args)
    if args.rebuild:
        start = time.monotonic()
        written = catalog.rebuild(lake, log=lambda message: print(message, flush=True))
        print(f"status catalog rebuilt from {lake.uri()}: {written:,} partitions in {time.monotonic() - start:.1f} s")
        return 0
    try:
        if args.compact:
            catalog.compact(lake)
        gone = catalog.verify(lake) if args.verify else []
        table = catalog.read(lake)
    except (catalog.CatalogMissing, catalog.CatalogDamaged) as exc:
        print(f"catalog: {exc}", file=sys.stderr)
        return 1
    counts = {}
    for asset in table.column("asset").to_pylist():
        counts[asset] = counts.get(asset, 0) + 1
    print(
        f"status catalog of {lake.uri()}: {table.num_rows:,} partitions recorded "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    if gone:
        print(
            f"{len(gone)} recorded partitions have no data in the lake any more (deleted by hand?): "
            + ", ".join(f"{a}[{p}]" for a, p in gone[:10])
            + ". Run `dataset-assets catalog --rebuild`.",
            file=sys.stderr,
        )
        return 1
    return 0


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="register landing shards and materialise the selected assets")
    run.add_argument("--landing", help="landing location: directory or s3://bucket/prefix (default CRAWL_LANDING)")
    run.add_argument("--lake", help="lake root: directory or s3://bucket/prefix (default DATASET_LAKE)")
    run.add_argument("--select", help="comma-separated assets (default: all)")
    run.add_argument("--log-level", default="INFO", help="Dagster console log level (DEBUG shows every event)")
    run.add_argument("--strategies", help="comma-separated strategies for rephrased (default: every prompts/*.toml)")
    run.add_argument("--chunk-docs", type=int, default=64, help="source documents per committed rephrasing chunk")
    run.add_argument("--max-output-tokens", type=int, help="cap every strategy's output limit (CPU demos)")
    run.add_argument(
        "--references", help="folder of reference corpora for statistics (default ../shared/data/reference)"
    )
    run.add_argument("--recipes", help="folder of mixture recipes (default recipes/)")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="per asset: partitions current, outdated (and why) and missing")
    status.add_argument("--landing", help="landing location (default CRAWL_LANDING)")
    status.add_argument("--lake", help="lake root (default DATASET_LAKE)")
    status.add_argument(
        "--max-output-tokens", type=int, help="the output cap `run` was given, if any (it is part of the prompt hash)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    cat = sub.add_parser("catalog", help="the lake's status catalog: counts, --verify, --compact or --rebuild")
    cat.add_argument("--lake", help="lake root (default DATASET_LAKE)")
    group = cat.add_mutually_exclusive_group()
    group.add_argument(
        "--rebuild", action="store_true", help="reconstruct the catalog from the lake (a full walk, once)"
    )
    group.add_argument(
        "--verify", action="store_true", help="check that every recorded partition's data is still in the lake"
    )
    group.add_argument("--compact", action="store_true", help="fold the catalog's record files into one")
    cat.set_defaults(func=cmd_catalog)
