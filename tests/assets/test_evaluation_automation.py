"""A recipe that asks for evaluation gets every new version of its mixtures (sweep variants included)
tokenized, trained on every seed, scored and ranked, by a sensor; other recipes' versions are left alone."""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetMaterialization,
    MultiPartitionKey,
    SkipReason,
    build_sensor_context,
    instance_for_test,
)

from dataset_assets.mixtures.recipe import RecipeError, load_recipe
from dataset_assets.proxy.automation import load_wishes, owed_runs
from tests.conftest import ROOT

RECIPE = """
description = "evaluated"
budget_tokens = 1000
sweep = [0, 30]
{evaluate}

[[components]]
source = "natural"
weight = 0.7

[[components]]
source = "rephrased"
strategy = "wikipedia"
weight = 0.3
"""


def write_recipes(directory, evaluated: str = 'evaluate = ["cpu-tiny"]'):
    directory.mkdir(exist_ok=True)
    (directory / "mix.toml").write_text(RECIPE.format(evaluate=evaluated))
    (directory / "plain.toml").write_text(RECIPE.format(evaluate=""))
    return directory


def test_wishes_cover_the_recipe_and_its_sweep_variants_and_leave_the_identity_alone(tmp_path):
    recipes = write_recipes(tmp_path / "recipes")
    (recipes / "broken.toml").write_text("budget_tokens = 'many'\n")
    wishes, problems = load_wishes(str(recipes))
    assert wishes == {"mix": ("cpu-tiny",), "mix-syn0": ("cpu-tiny",), "mix-syn30": ("cpu-tiny",)}
    assert len(problems) == 1 and "broken.toml" in problems[0]  # one bad file never hides the others
    mix, plain = load_recipe(recipes / "mix.toml"), load_recipe(recipes / "plain.toml")
    assert mix.content() == {**plain.content(), "name": "mix"}  # evaluate decides no row: same identity
    (recipes / "mix.toml").write_text(RECIPE.format(evaluate="evaluate = 'cpu-tiny'"))
    try:
        load_recipe(recipes / "mix.toml")
        raise AssertionError("a string instead of a list was accepted")
    except RecipeError as exc:
        assert "field `evaluate`: expected a list of proxy spec names" in str(exc)


def test_owed_runs_are_every_seed_of_every_asked_spec_not_yet_evaluated():
    wishes = {"mix": ("cpu-tiny", "nosuch")}
    owed, problems = owed_runs(
        ["mix@v1", "mix@v2", "plain@v1"], wishes, ["cpu-tiny", "gpu-small"], 2, {("mix@v1", "cpu-tiny.s0")}
    )
    assert owed == [("mix@v1", "cpu-tiny.s1"), ("mix@v2", "cpu-tiny.s0"), ("mix@v2", "cpu-tiny.s1")]
    assert problems == ["recipe of mix asks for proxy spec 'nosuch', which is not among ['cpu-tiny', 'gpu-small']"]


def tick(instance):
    from dataset_assets import definitions
    from dataset_assets.defs.evaluation import evaluate_new_versions

    with build_sensor_context(instance=instance, repository_def=definitions.defs.get_repository_def()) as context:
        return evaluate_new_versions(context)


def parts_of(result) -> set[tuple[str, str]]:
    (request,) = result.run_requests
    assert request.tags["dagster/from"] == "evaluate_new_versions"
    return {
        (ap.asset_key.to_user_string(), str(ap.partition_key))
        for ap in request.asset_graph_subset.iterate_asset_partitions()
    }


def test_the_sensor_backfills_new_versions_of_recipes_that_ask_and_only_those(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXTURE_RECIPES", str(write_recipes(tmp_path / "recipes")))
    monkeypatch.setenv("PROXY_SPECS", str(ROOT / "proxies"))
    with instance_for_test() as instance:
        assert isinstance(tick(instance), SkipReason)  # nothing published yet
        instance.add_dynamic_partitions("mixture_versions", ["mix-syn30@v1", "plain@v1", "plain-syn30@v1"])
        parts = parts_of(tick(instance))
        evaluated = {("proxy_models", f"cpu-tiny.s{s}|mix-syn30@v1") for s in (0, 1)}
        evaluated |= {("proxy_evaluations", f"cpu-tiny.s{s}|mix-syn30@v1") for s in (0, 1)}
        assert parts == evaluated | {("mixture_tokens", "bytes|mix-syn30@v1"), ("proxy_leaderboard", "None")}

        # Once both seeds are evaluated nothing is owed; a new version is, and its tokens are made once.
        for seed in (0, 1):
            key = MultiPartitionKey({"version": "mix-syn30@v1", "proxy": f"cpu-tiny.s{seed}"})
            instance.report_runless_asset_event(AssetMaterialization(AssetKey("proxy_evaluations"), partition=key))
        instance.report_runless_asset_event(
            AssetMaterialization(
                AssetKey("mixture_tokens"), partition=MultiPartitionKey({"version": "mix@v2", "tokenizer": "bytes"})
            )
        )
        assert isinstance(tick(instance), SkipReason)
        instance.add_dynamic_partitions("mixture_versions", ["mix@v2"])
        parts = parts_of(tick(instance))
        assert ("mixture_tokens", "bytes|mix@v2") not in parts  # already tokenized
        assert {p for p in parts if p[0] == "proxy_evaluations"} == {
            ("proxy_evaluations", f"cpu-tiny.s{s}|mix@v2") for s in (0, 1)
        }


def test_the_sensor_waits_for_its_previous_backfill(tmp_path, monkeypatch):
    from dagster._core.execution.backfill import PartitionBackfill

    monkeypatch.setenv("MIXTURE_RECIPES", str(write_recipes(tmp_path / "recipes")))
    monkeypatch.setenv("PROXY_SPECS", str(ROOT / "proxies"))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("mixture_versions", ["mix@v1"])
        first = tick(instance).run_requests[0]
        instance.add_backfill(
            PartitionBackfill.from_asset_graph_subset(
                "eval1",
                0.0,
                {"dagster/from": "evaluate_new_versions"},
                instance,
                first.asset_graph_subset,
                None,
                None,
                None,
            )
        )
        instance.add_dynamic_partitions("mixture_versions", ["mix@v2"])
        skipped = tick(instance)
        assert isinstance(skipped, SkipReason) and "still unfinished" in skipped.skip_message


def test_without_a_recipe_that_asks_the_sensor_does_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXTURE_RECIPES", str(write_recipes(tmp_path / "recipes", evaluated="")))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("mixture_versions", ["mix@v1"])
        skipped = tick(instance)
        assert isinstance(skipped, SkipReason) and "no recipe asks for evaluation" in skipped.skip_message
