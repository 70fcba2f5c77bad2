"""Automation for proxy evaluation: a recipe that says `evaluate = [spec, ...]` gets every new version
of its mixtures (and sweep variants) tokenized, trained and scored, and the leaderboard refreshed, as
one asset backfill per tick. The decisions are `dataset_assets.proxy.automation`'s."""

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    MultiPartitionKey,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from dataset_assets import settings
from dataset_assets.orchestration.dagster_internals import AssetGraphSubset, AssetKeyPartitionKey, BulkActionsFilter
from dataset_assets.orchestration.graph import (
    MIXTURE_TOKENS,
    PROXY_EVALUATIONS,
    PROXY_LEADERBOARD,
    PROXY_MODELS,
    mixture_versions,
    proxy_specs,
)
from dataset_assets.orchestration.in_flight import UNFINISHED_BACKFILLS, in_flight_partitions
from dataset_assets.proxy.automation import load_wishes, owed_runs
from dataset_assets.proxy.spec import ProxySpecError
from dataset_assets.proxy.tokens import tokenizer_key

EVALUATE_TAG = "evaluate_new_versions"


def _done(instance, key) -> set[tuple[str, ...]]:
    """Materialised partitions of a version-x-something asset as (version, other) pairs."""
    out = set()
    for k in instance.get_materialized_partitions(key):
        dims = k.keys_by_dimension if isinstance(k, MultiPartitionKey) else None
        if dims is None:  # stored as "<a>|<b>", dimensions in name order
            other, version = str(k).split("|", 1)
        else:
            version, other = dims["version"], next(v for d, v in dims.items() if d != "version")
        out.add((version, other))
    return out


@sensor(
    name=EVALUATE_TAG,
    asset_selection=AssetSelection.assets(MIXTURE_TOKENS, PROXY_MODELS, PROXY_EVALUATIONS, PROXY_LEADERBOARD),
    minimum_interval_seconds=120,
    default_status=DefaultSensorStatus.RUNNING,
    description='Every new version of a mixture whose recipe asks for it (evaluate = ["cpu-tiny"]): its tokens, '
    "one proxy per spec and seed (PROXY_SEEDS), their evaluations and the leaderboard, as one backfill.",
)
def evaluate_new_versions(context: SensorEvaluationContext):
    wishes, problems = load_wishes(settings.recipes_dir())
    for problem in problems:
        context.log.warning(problem)
    if not wishes:
        return SkipReason('no recipe asks for evaluation (evaluate = ["cpu-tiny"] in recipes/<name>.toml)')
    instance = context.instance
    if instance.get_backfills(
        filters=BulkActionsFilter(statuses=UNFINISHED_BACKFILLS, tags={"dagster/from": EVALUATE_TAG}), limit=1
    ):
        return SkipReason("the previous evaluation backfill is still unfinished")
    try:
        specs = proxy_specs()
    except ProxySpecError as exc:
        return SkipReason(str(exc))
    versions = instance.get_dynamic_partitions(mixture_versions.name)
    owed, unknown = owed_runs(versions, wishes, specs, settings.proxy_seeds(), _done(instance, PROXY_EVALUATIONS))
    for problem in unknown:
        context.log.warning(problem)
    tokens = _done(instance, MIXTURE_TOKENS)
    wanted = set()
    for version, proxy in owed:
        tokenizer = tokenizer_key(specs[proxy.rpartition(".s")[0]].tokenizer)
        if (version, tokenizer) not in tokens:
            key = MultiPartitionKey({"version": version, "tokenizer": tokenizer})
            wanted.add(AssetKeyPartitionKey(MIXTURE_TOKENS, key))
        for asset in (PROXY_MODELS, PROXY_EVALUATIONS):
            wanted.add(AssetKeyPartitionKey(asset, MultiPartitionKey({"version": version, "proxy": proxy})))
    asset_graph = context.repository_def.asset_graph
    wanted -= in_flight_partitions(instance, asset_graph)
    if not wanted:
        return SkipReason("every version its recipe asks to evaluate is evaluated or being evaluated")
    wanted.add(AssetKeyPartitionKey(PROXY_LEADERBOARD, None))
    context.log.info(f"evaluating {len(owed)} proxy runs of {len({v for v, _ in owed})} new versions")
    subset = AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)
    return SensorResult(run_requests=[RunRequest.for_asset_graph_subset(subset, tags={"dagster/from": EVALUATE_TAG})])
