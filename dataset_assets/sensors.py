"""The landing sensor: new shard files become `crawl_shards` partitions and runs of their assets."""


from dagster import AssetSelection, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from dataset_assets.assets.crawl import crawl_docs
from dataset_assets.assets.seeds import seeds
from dataset_assets.partitions import crawl_shards
from resources.landing import CrawlLanding


def new_shard_keys(landing: CrawlLanding, known: set[str]) -> list[str]:
    return [key for key in landing.files() if key not in known]


@sensor(
    asset_selection=AssetSelection.assets(crawl_docs, seeds),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a crawl_shards partition for every new file in the landing location and requests its run.",
)
def crawl_landing_sensor(context: SensorEvaluationContext, landing: CrawlLanding):
    known = set(context.instance.get_dynamic_partitions(crawl_shards.name))
    keys = new_shard_keys(landing, known)
    if not keys:
        return SkipReason(f"no new shard files in {landing.location}")
    context.log.info(f"new shards: {keys}")
    return SensorResult(
        run_requests=[RunRequest(partition_key=key, run_key=f"shard:{key}") for key in keys],
        dynamic_partitions_requests=[crawl_shards.build_add_request(keys)],
    )
