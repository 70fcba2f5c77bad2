"""Which mixture is better: proxy models trained and evaluated inside the graph.

`mixture_tokens` [version x tokenizer] -> `proxy_models` [version x spec.seed] -> `proxy_evaluations`
[version x spec.seed] -> `proxy_leaderboard`. The pure code is `dataset_assets/proxy/`; the GPU tiers
run their trainer in its own environment through Dagster Pipes.
"""

import errno
from typing import Optional

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    MultiPartitionKey,
    PipesSubprocessClient,
    asset,
)

from dataset_assets import settings
from dataset_assets.mixtures.pull import VersionNotFoundError
from dataset_assets.orchestration.graph import (
    MIXTURES,
    PROXY_EVALUATIONS,
    proxy_partitions,
    proxy_specs,
    split_proxy_key,
    token_partitions,
)
from dataset_assets.progress import Progress
from dataset_assets.proxy import gpu_tier, store
from dataset_assets.proxy import leaderboard as board
from dataset_assets.proxy.decontaminate import Contamination
from dataset_assets.proxy.evalsets import EvalSetError, load_eval_sets
from dataset_assets.proxy.report import leaderboard_inputs, write_leaderboard
from dataset_assets.proxy.runs import evaluate_run, train_run
from dataset_assets.proxy.spec import ProxySpecError
from dataset_assets.proxy.tokens import CODE_VERSION, load_tokenizer, read_manifest, tokenize_version, tokenizer_key
from dataset_assets.proxy.train import BudgetTooLarge
from resources.lake import Lake

GROUP = "proxy"


class ProxyConfig(Config):
    eval_sets: Optional[list[str]] = None  # files or folders; default EVAL_SETS
    train_tokens: Optional[int] = None  # overrides every spec's training.tokens (the CLI's --train-tokens)


def _dims(context: AssetExecutionContext) -> dict[str, str]:
    key = context.partition_key
    return (
        key.keys_by_dimension
        if isinstance(key, MultiPartitionKey)
        else dict(zip(("proxy", "version"), str(key).split("|")))
    )


def _eval_sets(config: ProxyConfig) -> list:
    try:
        return load_eval_sets(config.eval_sets or settings.eval_sets())
    except EvalSetError as exc:
        raise Failure(str(exc)) from exc


def _specs() -> dict:
    try:
        return proxy_specs()
    except ProxySpecError as exc:
        raise Failure(str(exc)) from exc


def _split(version_key: str) -> tuple[str, str]:
    name, _, version = version_key.partition("@")
    return name, version


@asset(
    partitions_def=token_partitions,
    deps=[AssetDep(MIXTURES, partition_mapping=AllPartitionMapping())],
    group_name=GROUP,
    kinds={"numpy"},
    code_version=CODE_VERSION,
    description="A published mixture version as flat uint16/uint32 token arrays with an end-of-document token, "
    "decontaminated against every evaluation set (13-grams), with a manifest of counts and checksums.",
)
def mixture_tokens(context: AssetExecutionContext, config: ProxyConfig, lake: Lake) -> MaterializeResult:
    dims = _dims(context)
    name, version = _split(dims["version"])
    spec_tokenizer = next(
        (s.tokenizer for s in _specs().values() if tokenizer_key(s.tokenizer) == dims["tokenizer"]), "bytes"
    )
    sets = _eval_sets(config)
    progress = Progress(context.log.info, f"{dims['version']} ({dims['tokenizer']}): rows read")
    try:
        tokenizer = load_tokenizer(spec_tokenizer, settings.mixture_tokenizer())
        done = tokenize_version(
            lake,
            dims["version"],
            tokenizer,
            dims["tokenizer"],
            Contamination(sets),
            [s.name for s in sets],
            lambda rows, tokens: progress.update(rows, f"{tokens:,} tokens"),
        )
    except VersionNotFoundError as exc:
        raise Failure(f"{exc}: publish it with the mixtures asset (dataset-assets run --select mixtures)") from exc
    m = done.manifest
    removed = m["decontamination"]["removed"]
    context.log.info(f"{dims['version']}: {m['tokens']:,} tokens, {sum(removed.values())} contaminated rows left out")
    return MaterializeResult(
        metadata={
            "tokens": m["tokens"],
            "documents": m["documents"],
            "dtype": m["dtype"],
            "vocab_size": m["vocab_size"],
            "files": len(m["files"]),
            "decontaminated_rows": sum(removed.values()),
            "decontaminated_by_component": MetadataValue.json(removed),
            "eval_sets": MetadataValue.json(m["decontamination"]["eval_sets"]),
            "path": MetadataValue.path(lake.uri("mixture_tokens", f"mixture={name}", f"version={version}")),
        },
        data_version=DataVersion(store.manifest_digest(m)[:16]),
    )


def _run_key(dims: dict) -> tuple[store.RunKey, str]:
    name, version = _split(dims["version"])
    spec_name, seed = split_proxy_key(dims["proxy"])
    return store.RunKey(name, version, spec_name, seed), spec_name


def _spec_and_tokens(config: ProxyConfig, lake: Lake, dims: dict):
    key, spec_name = _run_key(dims)
    specs = _specs()
    if spec_name not in specs:
        raise Failure(f"no proxy spec {spec_name!r} in {settings.proxy_specs_dir()} (PROXY_SPECS)")
    spec = specs[spec_name].with_tokens(config.train_tokens)
    manifest = read_manifest(lake, key.mixture, key.version, tokenizer_key(spec.tokenizer))
    if manifest is None:
        raise Failure(
            f"{key.spec} has no {tokenizer_key(spec.tokenizer)} tokens yet: materialise "
            f"mixture_tokens[{tokenizer_key(spec.tokenizer)}|{key.spec}] first"
        )
    return key, spec, manifest


@asset(
    partitions_def=proxy_partitions,
    deps=[AssetDep("mixture_tokens", partition_mapping=AllPartitionMapping())],
    group_name=GROUP,
    kinds={"pytorch"},
    code_version="1",
    description="A proxy model (proxies/<spec>.toml) trained on one mixture version with one seed; resumes from its "
    "last checkpoint. Records the loss curve, tokens seen, wall time, FLOPs and what it trained on.",
)
def proxy_models(context: AssetExecutionContext, config: ProxyConfig, lake: Lake) -> MaterializeResult:
    key, spec, manifest = _spec_and_tokens(config, lake, _dims(context))
    if spec.tier != "cpu-tiny":
        record = _launch_gpu_tier(context, lake, key, spec, manifest)
        reused, resumed = False, 0
    else:
        progress = Progress(context.log.info, f"{key.spec} {key.proxy} seed {key.seed}: steps")

        def on_step(state, total: int) -> None:
            progress.total = total
            loss = f", loss {state.losses[-1][1]:.3f}" if state.losses else ""
            progress.update(state.step, f"{state.tokens_seen:,} tokens{loss}")

        try:
            outcome = train_run(lake, key, spec, manifest, on_step)
        except BudgetTooLarge as exc:
            raise Failure(str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise Failure(
                    f"no space left on the device while training {key.spec} {key.proxy}: free space and "
                    "materialise again; it resumes from its last checkpoint"
                ) from exc
            raise
        record, reused, resumed = outcome.record, outcome.reused, outcome.resumed_from
    return MaterializeResult(
        metadata=_run_metadata(record, reused, resumed),
        data_version=DataVersion(
            store.manifest_digest(
                {k: record[k] for k in ("spec_digest", "tokens_manifest_sha256", "seed", "tokens_seen")}
            )[:16]
        ),
    )


def _run_metadata(record: dict, reused: bool, resumed_from: int) -> dict:
    return {
        "trained_on": f"{record['mixture']}@{record['version']} (tokens manifest "
        f"{record['tokens_manifest_sha256'][:16]})",
        "proxy": record["proxy"],
        "tier": record["tier"],
        "seed": record["seed"],
        "tokens_seen": record["tokens_seen"],
        "epochs": record.get("epochs", 0.0),
        "parameters": record["parameters"],
        "flops": record["flops"],
        "train_seconds": record.get("train_seconds", 0.0),
        "tokens_per_second": record.get("tokens_per_second", 0.0),
        "final_loss": record["loss_curve"][-1][1] if record["loss_curve"] else float("nan"),
        "loss_curve": MetadataValue.json(record["loss_curve"]),
        "reused_finished_run": reused,
        "resumed_from_step": resumed_from,
    }


def _launch_gpu_tier(context, lake: Lake, key: store.RunKey, spec, manifest: dict) -> dict:
    """OLMo-core in its own environment, through Dagster Pipes; the trainer reports what it did."""
    try:
        argv = gpu_tier.command(spec, settings.gpu_python())
    except gpu_tier.MissingEnvironment as exc:
        raise Failure(str(exc)) from exc
    client = PipesSubprocessClient()
    reported = client.run(command=argv, context=context, extras=gpu_tier.extras(lake, key, spec, manifest))
    meta = {k: getattr(v, "value", v) for k, v in (reported.get_materialize_result().metadata or {}).items()}
    try:
        record = gpu_tier.record(key, spec, manifest, meta)
    except ValueError as exc:
        raise Failure(f"{exc} ({' '.join(argv)})") from exc
    store.write_run(lake, key, record)
    return record


@asset(
    partitions_def=proxy_partitions,
    deps=["proxy_models"],
    group_name=GROUP,
    kinds={"parquet"},
    code_version="1",
    description="The proxy scored on every evaluation set: bits per byte on held-out text, BLiMP minimal pairs "
    "(accuracy with ties wrong, and the log-probability margin). One row per (run, set, metric).",
)
def proxy_evaluations(context: AssetExecutionContext, config: ProxyConfig, lake: Lake) -> MaterializeResult:
    key, spec, _ = _spec_and_tokens(config, lake, _dims(context))
    record = store.finished_run(lake, key)
    if record is None:
        raise Failure(f"{key.spec} {key.proxy} seed {key.seed} is not trained yet: materialise proxy_models first")
    if spec.tier == "cpu-tiny":
        rows = evaluate_run(lake, key, spec, record, _eval_sets(config), settings.mixture_tokenizer())
    else:  # the GPU tier's trainer scored its own model
        rows = gpu_tier.evaluation_rows(key, spec, record, record.get("evaluations", []))
        store.write_evaluations(lake, key, rows)
    table = "| set | metric | value |\n|---|---|---|\n" + "".join(
        f"| {r['eval_set']} | {r['metric']} | {r['value']:.4f} |\n" for r in rows
    )
    return MaterializeResult(
        metadata={
            "rows": len(rows),
            "scores": MetadataValue.md(table),
            **{f"{r['eval_set']}/{r['metric']}": float(r["value"]) for r in rows},
        },
        data_version=DataVersion(store.manifest_digest({"rows": rows})[:16]),
    )


@asset(
    deps=[AssetDep(PROXY_EVALUATIONS, partition_mapping=AllPartitionMapping())],
    group_name=GROUP,
    kinds={"duckdb"},
    code_version="1",
    description="Per recipe: mixture versions and sweep points ranked per evaluation set with the seeds' range, "
    "decision accuracy between seeds and tiers, evaluation loss against the synthetic share, KL against bits per byte.",
)
def proxy_leaderboard(context: AssetExecutionContext, lake: Lake) -> MaterializeResult:
    rows, shares, kl = leaderboard_inputs(lake)
    if not rows:
        raise Failure("no proxy evaluations in the lake yet: materialise proxy_evaluations first")
    boards = board.leaderboard(rows, shares, kl)
    written = write_leaderboard(lake, boards)
    metadata = {"recipes": MetadataValue.json(sorted(boards)), "rows": len(rows)}
    for recipe, files in written.items():
        metadata[f"{recipe}_leaderboard"] = MetadataValue.md(files["markdown"])
        if files.get("plot_markdown"):
            metadata[f"{recipe}_synthetic_share_plot"] = MetadataValue.md(files["plot_markdown"])
    return MaterializeResult(metadata=metadata)
