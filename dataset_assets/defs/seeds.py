"""`seeds` [shard]: every document scored, kept or dropped with its reason; a blocking check guards it.

A backfill run, or a dedup_seeds_sensor run of consecutive shards, covers up to
BACKFILL_SHARDS_PER_RUN shards (as crawl_docs does): the quality model loads once for all of them,
and each check is reported once for the run, naming the shards that failed it (a run of one shard
reports exactly that shard, as before).
"""

import tempfile
from collections import Counter
from typing import Optional

import numpy as np
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dataset_assets.dedup.store import DEDUP_FINGERPRINT, NOT_COVERED, decisions_for_shard
from dataset_assets.orchestration.graph import CRAWL_DOCS, DEDUP_CLUSTERS, QUALITY_CLASSIFIER, crawl_shards
from dataset_assets.orchestration.shard_runs import ShardResult, each_shard, shard_backfill_policy
from dataset_assets.progress import Progress
from dataset_assets.quality.heuristics import GopherRules
from dataset_assets.quality.scorer import SeedScorer
from dataset_assets.quality.seed_checks import expected_kept_share, kept_share_check, signals_described, validate_seeds
from dataset_assets.quality.seeds import KEPT_FINGERPRINT, SEED_SCHEMA, KeepRule, table_kept_fingerprint
from dataset_assets.quality.store import QualityModelMissing
from dataset_assets.status import catalog
from resources.lake import Lake

ASSET = "seeds"
CHECK = "seeds_valid"
KEPT_CHECK = "seeds_kept_share"


class SeedsConfig(Config):
    top_fraction: Optional[float] = 0.1  # keep documents at or above this calibrated top share (DCLM: ~10%)
    min_score: Optional[float] = None  # alternatively keep P(hq) >= min_score (then set top_fraction to null)
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_ellipsis_line_fraction: float = 0.3
    min_alpha_word_fraction: float = 0.8
    min_stop_words: int = 2
    # The kept-share WARN judges only shards with at least this many documents: with top_fraction
    # 0.1 a 3-document shard is expected to keep nothing.
    check_min_documents: int = 10
    # WARN when a shard keeps less than this share of what the keep rule keeps over the crawl.
    warn_kept_ratio: float = 0.25


def _gopher(config: SeedsConfig) -> GopherRules:
    return GopherRules(
        config.min_words,
        config.max_words,
        config.min_mean_word_length,
        config.max_mean_word_length,
        config.max_symbol_word_ratio,
        config.max_ellipsis_line_fraction,
        config.min_alpha_word_fraction,
        config.min_stop_words,
    )


def _check_results(shard: str, ok: bool, facts: dict, share_ok: bool, share_facts: dict) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            check_name=CHECK,
            passed=ok,
            severity=AssetCheckSeverity.ERROR,
            metadata=facts,
            description=None if ok else f"seeds of {shard} failed validation: {facts}",
        ),
        AssetCheckResult(
            check_name=KEPT_CHECK,
            passed=share_ok,
            severity=AssetCheckSeverity.WARN,
            metadata=share_facts,
            description=None
            if share_ok
            else (
                f"{shard} kept {share_facts['kept_share']:.1%} of its documents against "
                f"{share_facts['crawl_kept_share']:.1%} over the crawl: a low-quality shard (not an error)"
            ),
        ),
    ]


def run_check_results(by_shard: dict[str, list[AssetCheckResult]]) -> list[AssetCheckResult]:
    """One result per check for a run: a one-shard run's own results; for many shards, each check
    passes only if it passed for every shard, and its metadata names the shards that failed it (with
    their facts) and sums the counts, so a low-quality shard inside a backfill run stays visible."""
    if len(by_shard) == 1:
        return next(iter(by_shard.values()))
    out = []
    for spec in (CHECK, KEPT_CHECK):
        results = {shard: next(r for r in checks if r.check_name == spec) for shard, checks in by_shard.items()}
        failing = {
            shard: {k: v.value for k, v in r.metadata.items()} for shard, r in sorted(results.items()) if not r.passed
        }
        counts: dict = {}
        for r in results.values():
            for key, value in r.metadata.items():
                if key in ("kept", "documents", "duplicate_ids", "scores_out_of_range", "rows_lost"):
                    counts[key] = counts.get(key, 0) + value.value
        what = (
            "failed validation"
            if spec == CHECK
            else "kept far fewer seeds than the crawl (low-quality shards, not an error)"
        )
        out.append(
            AssetCheckResult(
                check_name=spec,
                passed=not failing,
                severity=AssetCheckSeverity.ERROR if spec == CHECK else AssetCheckSeverity.WARN,
                metadata={
                    "shards": len(results),
                    "failing_shards": len(failing),
                    **counts,
                    "failing": MetadataValue.json(failing),
                },
                description=None
                if not failing
                else f"{len(failing)} of {len(results)} shards {what}: {', '.join(list(failing)[:5])}"
                + (" ..." if len(failing) > 5 else ""),
            )
        )
    return out


@asset(
    partitions_def=crawl_shards,
    backfill_policy=shard_backfill_policy(),
    deps=[CRAWL_DOCS, QUALITY_CLASSIFIER, DEDUP_CLUSTERS],
    group_name="quality",
    kinds={"parquet"},
    code_version="3",
    check_specs=[
        AssetCheckSpec(
            CHECK, asset=ASSET, blocking=True, description="integrity: unique ids, scores in [0, 1], no row lost"
        ),
        AssetCheckSpec(
            KEPT_CHECK, asset=ASSET, description="WARN: the shard keeps far fewer seeds than the crawl does"
        ),
    ],
    description="Every crawl document with P(hq), the reference LM's score, its length, their combined percentile, "
    "Gopher rules, its dedup decision, `kept` and `drop_reason`.",
)
def seeds(context: AssetExecutionContext, config: SeedsConfig, lake: Lake) -> MaterializeResult:
    checks: dict[str, list[AssetCheckResult]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            scorer = SeedScorer(lake, tmp)
        except (QualityModelMissing, ValueError, ImportError) as exc:  # ValueError: a stored signal that cannot be used
            raise Failure(str(exc)) from exc
        result = each_shard(
            context, lake, lambda shard: _seeds_one(context, config, lake, scorer, shard, checks), _run_totals
        )
    return MaterializeResult(
        metadata=result.metadata, data_version=result.data_version, check_results=run_check_results(checks)
    )


def _run_totals(sums: dict, per_shard: dict) -> dict:
    """A many-shard run's kept share and mean score, over all its rows (not summed per shard)."""
    rows = sums["rows"]
    mean = sum(m["mean_quality_score"] * m["rows"] for m in per_shard.values()) / rows if rows else 0.0
    return {**sums, "kept_share": sums["kept"] / rows if rows else 0.0, "mean_quality_score": mean}


def _seeds_one(
    context: AssetExecutionContext,
    config: SeedsConfig,
    lake: Lake,
    scorer: SeedScorer,
    shard: str,
    checks: dict[str, list[AssetCheckResult]],
) -> ShardResult:
    """One shard's seeds, committed and recorded; its check results go into `checks`."""
    rule = KeepRule(top_fraction=config.top_fraction, min_score=config.min_score)
    docs = lake.read_partition("crawl_docs", {"shard": shard})
    dedup_fingerprint, duplicates = decisions_for_shard(lake, shard)
    if dedup_fingerprint == NOT_COVERED:
        context.log.warning(
            f"{shard} is not in dedup_clusters yet: its seeds are not deduplicated. Materialise "
            f"dedup_signatures[{shard}], dedup_buckets and dedup_clusters; the dedup sensor and the nightly backfill "
            "then rebuild these seeds."
        )
    progress = Progress(context.log.info, f"{shard}: documents scored", total=docs.num_rows)
    scored = scorer.score(docs, rule, _gopher(config), duplicates, progress.update)
    table = pa.Table.from_batches(scored, schema=SEED_SCHEMA)
    fingerprint = {KEPT_FINGERPRINT: table_kept_fingerprint(table), DEDUP_FINGERPRINT: dedup_fingerprint}
    written = lake.write_partition(ASSET, {"shard": shard}, table.to_batches(), SEED_SCHEMA, fingerprint)
    catalog.record(lake, ASSET, shard, written.data_version, **fingerprint)
    ok, facts = validate_seeds(table, docs.num_rows)
    reasons = Counter(r for r in table.column("drop_reason").to_pylist() if r)
    # The kept share is judged over the shard's own documents: copies folded into another shard's
    # representative are not this shard's low quality.
    own = docs.num_rows - reasons.get("duplicate", 0) - reasons.get("near_duplicate", 0)
    share_ok, share_facts = kept_share_check(
        facts["kept"],
        own,
        expected_kept_share(rule, scorer.calibration["quantiles"]),
        config.warn_kept_ratio,
        config.check_min_documents,
    )
    checks[shard] = _check_results(shard, ok, facts, share_ok, share_facts)
    context.log.info(f"{shard}: {facts['kept']} of {docs.num_rows} documents kept; drops {dict(reasons)}")
    metadata = _shard_metadata(
        config, lake, scorer, shard, docs, table, written, facts["kept"], reasons, dedup_fingerprint
    )
    return metadata, written.data_version


def _shard_metadata(
    config: SeedsConfig,
    lake: Lake,
    scorer: SeedScorer,
    shard: str,
    docs: pa.Table,
    table: pa.Table,
    written,
    kept: int,
    reasons: Counter,
    dedup_fingerprint: str,
) -> dict:
    scores = table.column("quality_score").to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(1)
    by_crawl = scorer.by_crawl
    return {
        "rows": written.rows,
        "kept": kept,
        "kept_share": kept / docs.num_rows if docs.num_rows else 0.0,
        "drop_counts": MetadataValue.json(dict(reasons)),
        "bytes": written.bytes,
        "path": MetadataValue.path(lake.uri(*lake.partition_parts(ASSET, {"shard": shard}))),
        "mean_quality_score": float(scores.mean()),
        "quality_signals": signals_described(scorer.calibration.get("signals")),
        "deduplicated": dedup_fingerprint != NOT_COVERED,
        "removed_exact": reasons.get("duplicate", 0),
        "removed_near": reasons.get("near_duplicate", 0),
        "keep_rule": f"top {config.top_fraction:.0%}" if config.min_score is None else f"P(hq) >= {config.min_score}",
        # Which calibration placed this shard's documents: their own crawl's, or the whole lake's.
        "calibrated_against": MetadataValue.json(
            {
                crawl: ("its crawl" if crawl in by_crawl else "the whole lake")
                for crawl in sorted(set(docs.column("crawl").to_pylist()))
            }
        ),
    }
