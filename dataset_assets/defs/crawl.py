"""`crawl_docs` [shard]: one landing file to clean, language-identified documents (the dedup stages
remove duplicates across the crawl, in an order-independent way)."""

import json
import time
from typing import Optional

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    sensor,
)

from dataset_assets import settings
from dataset_assets.crawl.documents import DOCUMENT_SCHEMA, DocumentRules, DocumentStats
from dataset_assets.crawl.ingest import ingest_shard
from dataset_assets.crawl.readers import ReadReport, UnsupportedShardError, shard_format
from dataset_assets.orchestration.graph import DEDUP_SIGNATURES, crawl_shards
from dataset_assets.orchestration.shard_runs import ShardResult, each_shard, shard_backfill_policy
from dataset_assets.progress import Progress
from dataset_assets.status import batches, catalog, landings
from resources.lake import Lake
from resources.landing import CrawlLanding

ASSET = "crawl_docs"


class CrawlDocsConfig(Config):
    languages: Optional[list[str]] = ["en"]  # ISO codes to keep; null keeps every language
    min_lang_score: float = 0.65  # fastText lid.176 probability below which a document is dropped
    min_chars: int = 200  # extracted text shorter than this is dropped as too_short
    max_chars: int = 100_000  # longer text is cut here and counted as capped


@asset(
    partitions_def=crawl_shards,
    backfill_policy=shard_backfill_policy(),
    group_name="ingest",
    kinds={"parquet"},
    code_version="1",
    description="Clean documents of one crawl shard: main-content text, language, content hash, lineage. A backfill "
    "run reads up to BACKFILL_SHARDS_PER_RUN shard files one after another.",
)
def crawl_docs(
    context: AssetExecutionContext, config: CrawlDocsConfig, lake: Lake, landing: CrawlLanding
) -> MaterializeResult:
    return each_shard(context, lake, lambda shard: _crawl_one(context, config, lake, landing, shard))


def _crawl_one(
    context: AssetExecutionContext, config: CrawlDocsConfig, lake: Lake, landing: CrawlLanding, shard: str
) -> ShardResult:
    landing_file = landing.file(shard)
    try:
        shard_format(landing_file.name)
    except UnsupportedShardError as exc:
        raise Failure(description=str(exc), metadata={"file": landing_file.name}) from exc

    rules = DocumentRules(config.min_chars, config.max_chars, config.languages, config.min_lang_score)
    stats, report = DocumentStats(), ReadReport()
    progress = Progress(context.log.info, f"{shard}: bytes read", total=landing_file.size)

    def opener():
        return landing_file.path if landing.is_local() else landing.open(landing_file)

    batches = ingest_shard(
        shard,
        landing_file.name,
        opener,
        rules,
        stats,
        report,
        text_fields=tuple(landing.text_fields),
        url_fields=tuple(landing.url_fields),
        id_fields=tuple(landing.id_fields),
        on_record=lambda: progress.update(report.position, f"{report.records} records, {stats.kept} documents kept"),
    )
    written = lake.write_partition(ASSET, {"shard": shard}, batches, DOCUMENT_SCHEMA)
    catalog.record(lake, ASSET, shard, written.data_version)
    if report.truncated:
        context.log.warning(
            f"{landing_file.name} is damaged ({report.error}); kept the {stats.kept} documents before the break"
        )
    context.log.info(f"{shard}: {report.records} records -> {stats.kept} documents; drops {dict(stats.drops)}")
    return (
        {
            "rows": written.rows,
            "bytes": written.bytes,
            "path": MetadataValue.path(lake.uri(*lake.partition_parts(ASSET, {"shard": shard}))),
            "source_file": landing_file.name,
            "source_bytes": landing_file.size,
            "format": report.format,
            "crawl": report.crawl or "",
            "records_read": report.records,
            "empty_source": report.records == 0,
            "truncated": report.truncated,
            "read_error": report.error or "",
            "capped": stats.capped,
            "text_chars": stats.text_chars,
            "drop_counts": MetadataValue.json(dict(stats.drops)),
            "dropped": sum(stats.drops.values()),
            "languages": MetadataValue.json(dict(stats.languages.most_common(20))),
        },
        written.data_version,
    )


def new_shard_keys(landing: CrawlLanding, known: set[str], listed: Optional[dict] = None) -> list[str]:
    return [key for key in (listed if listed is not None else landing.files()) if key not in known]


def _landing_cursor(raw: Optional[str]) -> dict:
    """{"after": the last landing path listed, "reconciled_at": when the landing was last listed whole}."""
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:  # a cursor from before this format: start over (registration is idempotent)
        state = {}
    return {"after": state.get("after"), "reconciled_at": float(state.get("reconciled_at") or 0.0)}


def new_landing_keys(
    landing: CrawlLanding, known: set[str], cursor: dict, batch: int, now: float
) -> tuple[list[str], str]:
    """New shard keys for this tick (cursor updated in place) and how they were found. Files after
    the cursor come first (on S3 a listing of only those keys); when there are none, the whole
    landing is listed at most every LANDING_RECONCILE_SECONDS, for files whose names sort before
    the cursor (uploaded out of name order). A local folder is listed once per tick for both."""
    whole = landing.files() if landing.is_local() else None
    listed, last = landing.files_after(cursor["after"], batch, whole)
    if last is not None:
        cursor["after"] = last
    found = list(dict.fromkeys(f.key for f in listed if f.key not in known))
    if found:
        return found, "after the cursor"
    if now - cursor["reconciled_at"] < settings.landing_reconcile_seconds():
        return [], "after the cursor"
    cursor["reconciled_at"] = now
    return new_shard_keys(landing, known, whole), "by listing the whole landing"


@sensor(
    asset_selection=AssetSelection.assets(crawl_docs, DEDUP_SIGNATURES),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a crawl_shards partition for every new file in the landing location and requests its documents "
    "and dedup signatures; the dedup stages and seeds follow. Lists only files after its cursor (S3: StartAfter "
    "through dagster-aws), in batches of LANDING_SENSOR_BATCH, and the whole landing every LANDING_RECONCILE_SECONDS.",
)
def crawl_landing_sensor(context: SensorEvaluationContext, landing: CrawlLanding, lake: Lake):
    cursor = _landing_cursor(context.cursor)
    batch, size = settings.landing_batch(), settings.crawl_batch_files()
    registered = context.instance.get_dynamic_partitions(crawl_shards.name)
    known = set(batches.for_keys(lake, registered).files_of(registered))
    found, how = new_landing_keys(landing, known, cursor, batch, time.time())
    if not found:
        return SensorResult(
            skip_reason=SkipReason(f"no new shard files in {landing.location} ({how})"), cursor=json.dumps(cursor)
        )
    # Bounded work per tick: a landing of 100,000 files is registered over several ticks, CRAWL_BATCH_FILES
    # files per partition (a tick's last batch may be smaller), and the log says how many, not which.
    files = sorted(found[:batch])
    left = len(found) - len(files)
    # The batches are recorded in the lake before their keys exist in Dagster: a key never lacks its files.
    keys = batches.register(lake, batches.plan(files, registered, size))
    landings.record(lake, landing.location)  # status judges these files against this landing
    context.log.info(
        f"{len(found)} new shard files in {landing.location} ({how}); registering {len(files)} as {len(keys)} "
        "partitions "
        f"({keys[0]} .. {keys[-1]})" + (f", {left} left for the next ticks" if left else "")
    )
    return SensorResult(
        run_requests=[RunRequest(partition_key=key, run_key=f"shard:{key}") for key in keys],
        dynamic_partitions_requests=[crawl_shards.build_add_request(keys)],
        cursor=json.dumps(cursor),
    )
