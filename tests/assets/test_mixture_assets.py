"""The `mixtures` asset through Dagster, and a mixture built, pulled and opened from an S3 lake (moto)."""

from __future__ import annotations

import logging
import socket

import datasets
import duckdb
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from dataset_assets.defs.mixtures import mixture_recipes, mixtures
from dataset_assets.mixtures import duckdb_views, load_mixture
from dataset_assets.mixtures.build import build_mixtures
from dataset_assets.mixtures.lineage import trace
from dataset_assets.mixtures.pull import ChecksumError, list_versions, pull
from dataset_assets.mixtures.recipe import load_recipe
from resources.lake import Lake
from resources.tokenizer import TokenizerResource
from tests.support.mixture_lake import STRATEGIES, TOKENIZER, make_lake, write_recipe, write_shard


def run(lake, tmp_path, recipes, key="demo", raise_on_error=True, instance=None, strategies=STRATEGIES):
    prompts = tmp_path / "prompts"
    prompts.mkdir(exist_ok=True)
    for name in strategies:
        (prompts / f"{name}.toml").touch()
    config = {"recipes_dir": str(recipes), "prompts_dir": str(prompts), "tokenizer": TOKENIZER}
    return materialize(
        [mixtures],
        partition_key=key,
        resources={"lake": lake, "tokenizer": TokenizerResource(path=TOKENIZER)},
        instance=instance or DagsterInstance.ephemeral(),
        run_config={"ops": {"mixtures": {"config": config}}},
        raise_on_error=raise_on_error,
    )


def materialization(result):
    (event,) = result.get_asset_materialization_events()
    mat = event.event_specific_data.materialization
    return {k: v.value for k, v in mat.metadata.items()}, mat.tags.get("dagster/data_version")


def test_the_asset_depends_on_seeds_and_rephrased_and_has_a_partition_per_recipe():
    assert "demo" in mixture_recipes.get_partition_keys()
    assert {AssetKey("seeds"), AssetKey("rephrased")} <= set(mixtures.dependency_keys)
    assert mixtures.group_names_by_key[AssetKey("mixtures")] == "mixtures"
    assert mixtures.automation_conditions_by_key.get(AssetKey("mixtures")) is None  # new versions are deliberate


def test_materialising_publishes_v1_then_reuses_it_then_v2_after_a_new_shard(tmp_path):
    lake = make_lake(tmp_path / "lake")
    recipes = tmp_path / "recipes"
    write_recipe(recipes, name="demo", budget_tokens=6000)
    instance = DagsterInstance.ephemeral()
    first, first_version = materialization(run(lake, tmp_path, recipes, instance=instance))
    assert first["version"] == "v1" and first["reused"] is False and first["rows"] > 0
    assert first["achieved_shares"] == pytest.approx(
        {"natural": 0.7, "wikipedia": 0.1, "qa": 0.1, "summary": 0.1}, abs=0.03
    )
    assert first["path"].endswith("mixtures/demo/v1") and first_version == first["identity"]
    again, again_version = materialization(run(lake, tmp_path, recipes, instance=instance))
    assert again["version"] == "v1" and again["reused"] is True and again_version == first_version
    write_shard(lake, "shard-c")
    third, third_version = materialization(run(lake, tmp_path, recipes, instance=instance))
    assert third["version"] == "v2" and third_version != first_version
    assert [v["version"] for v in list_versions(lake, "demo")] == ["v1", "v2"]


def test_a_bad_recipe_fails_the_run_with_the_file_and_field(tmp_path):
    lake = make_lake(tmp_path / "lake")
    recipes = tmp_path / "recipes"
    write_recipe(recipes, name="demo", components=[("natural", None, 0.5), ("rephrased", "qa", 0.3)])
    result = run(lake, tmp_path, recipes, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "demo.toml" in message and "`components.weight`" in message and "sum to 1" in message


def test_missing_upstream_fails_the_run_and_names_the_partitions(tmp_path):
    lake = make_lake(tmp_path / "lake", strategies=("wikipedia",))
    recipes = tmp_path / "recipes"
    write_recipe(recipes, name="demo")
    result = run(lake, tmp_path, recipes, raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "rephrased shard=shard-a strategy=qa" in failure.event_specific_data.error.message


def test_the_demo_recipe_builds_on_a_lake_of_sample_size(tmp_path):
    demo_strategies = ("wikipedia", "summary", "continuation")  # what `make demo` rephrases
    lake = make_lake(tmp_path / "lake", n=100, strategies=demo_strategies)
    from tests.conftest import ROOT

    meta, _ = materialization(run(lake, tmp_path, ROOT / "recipes", strategies=demo_strategies))
    assert meta["version"] == "v1" and meta["achieved_shares"]["natural"] == pytest.approx(0.7, abs=0.02)


# -- S3 --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_a_mixture_on_s3_builds_pulls_loads_traces_and_is_queryable(s3_endpoint, tmp_path):
    lake = Lake(
        root="s3://lake/mixture-test",
        s3_endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    for shard in ("shard-a", "shard-b"):
        write_shard(lake, shard)
    recipe = load_recipe(write_recipe(tmp_path / "recipes"), STRATEGIES)
    (result,) = build_mixtures(lake, recipe, TOKENIZER)
    assert result.path == "s3://lake/mixture-test/mixtures/mix/v1" and result.manifest["achieved_shares"][
        "natural"
    ] == pytest.approx(0.7, abs=0.02)

    ds = load_mixture("mix", lake=lake, cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds, datasets.Dataset) and ds.num_rows == result.manifest["rows"]
    assert (tmp_path / "cache" / "mix" / "v1" / "manifest.json").is_file()  # pulled once, verified

    row = next(r for r in ds if r["component"] == "summary")
    assert [s["level"] for s in trace(lake, "mix@v1", row["id"])] == ["mixture", "rephrased", "seed", "crawl"]
    con = duckdb_views(lake, duckdb.connect())
    assert con.execute("SELECT count(*) FROM mixtures WHERE version = 'v1'").fetchall() == [(ds.num_rows,)]

    # A damaged object on S3 fails the pull with nothing at the destination.
    key = ["mixtures", "mix", "v1", "part-00000.parquet"]
    lake.put_bytes(key, lake.get_bytes(key)[:-100])
    with pytest.raises(ChecksumError, match="part-00000.parquet in the lake is corrupt"):
        pull(lake, "mix@v1", tmp_path / "again")
    assert not (tmp_path / "again").exists()
