"""Recipe files: the demo recipe, every validation error by file and field, sweeps, availability."""

from __future__ import annotations

import pytest

from dataset_assets.mixtures.recipe import RecipeError, load_recipe, parse_recipe
from dataset_assets.mixtures.upstream import check_availability
from tests.conftest import ROOT
from tests.support.mixture_lake import STRATEGIES, write_recipe

COMPONENTS = [
    {"source": "natural", "weight": 0.7},
    {"source": "rephrased", "strategy": "wikipedia", "weight": 0.3},
]


def recipe(**overrides) -> dict:
    return {
        "budget_tokens": 1000,
        "seed": 1,
        "max_repetition": 2.0,
        "shard_rows": 10,
        "components": COMPONENTS,
        **overrides,
    }


def test_demo_recipe_is_70_natural_and_30_rephrased_across_three_strategies():
    demo = load_recipe(ROOT / "recipes" / "demo.toml", ("wikipedia", "summary", "continuation"))
    weights = {c.label: c.weight for c in demo.components}
    assert demo.name == "demo" and weights["natural"] == pytest.approx(0.7)
    assert {k for k in weights if k != "natural"} == {"wikipedia", "continuation", "summary"}
    assert sum(weights.values()) - weights["natural"] == pytest.approx(0.3)
    assert demo.max_repetition >= 1 and demo.budget_tokens > 0


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        (
            {
                "components": [
                    {"source": "natural", "weight": 0.6},
                    {"source": "rephrased", "strategy": "qa", "weight": 0.3},
                ]
            },
            "components.weight",
            "sum to 1",
        ),
        (
            {
                "components": [
                    {"source": "natural", "weight": 0.7},
                    {"source": "rephrased", "strategy": "poetry", "weight": 0.3},
                ]
            },
            "components[1].strategy",
            "unknown strategy 'poetry'",
        ),
        ({"budget_tokens": 0}, "budget_tokens", "positive"),
        ({"budget_tokens": -5}, "budget_tokens", "positive"),
        ({"budget_tokens": "lots"}, "budget_tokens", "expected an integer"),
        ({"budget_tokens": 1.5}, "budget_tokens", "expected an integer"),
        ({"max_repetition": 0.5}, "max_repetition", ">= 1.0"),
        ({"max_repetition": "2"}, "max_repetition", "expected a number"),
        ({"shard_rows": 0}, "shard_rows", "positive"),
        ({"seed": True}, "seed", "expected an integer"),
        ({"budget": 5}, "budget", "unknown key"),
        ({"components": [{"source": "natural", "wieght": 1.0}]}, "components[0].wieght", "unknown key"),
        ({"components": [{"source": "crawl", "weight": 1.0}]}, "components[0].source", "'natural' or 'rephrased'"),
        (
            {"components": [{"source": "natural", "weight": 0.5}, {"source": "rephrased", "weight": 0.5}]},
            "components[1].strategy",
            "needs `strategy`",
        ),
        (
            {"components": [{"source": "natural", "weight": 0.5}, {"source": "natural", "weight": 0.5}]},
            "components[1]",
            "appears twice",
        ),
        ({"components": [{"source": "natural", "weight": "0.5"}]}, "components[0].weight", "expected a number"),
        ({"components": []}, "components", "at least one"),
        ({"sweep": [10, 150]}, "sweep[1]", "[0, 100]"),
        (
            {"sweep": [0, 50], "components": [{"source": "natural", "weight": 1.0}]},
            "sweep",
            "natural and at least one rephrased",
        ),
        ({"name": "other"}, "name", "file name"),
        ({"description": 3}, "description", "expected a string"),
    ],
)
def test_invalid_recipe_error_names_the_file_and_field(tmp_path, overrides, field, words):
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe(**overrides), "mix", str(tmp_path / "mix.toml"), STRATEGIES)
    message = str(err.value)
    assert str(tmp_path / "mix.toml") in message and f"`{field}`" in message and words in message, message


def test_unknown_strategy_error_lists_the_known_ones(tmp_path):
    path = write_recipe(tmp_path, components=[("natural", None, 0.5), ("rephrased", "poetry", 0.5)])
    with pytest.raises(RecipeError, match=r"known strategies: \['qa', 'summary', 'wikipedia'\]"):
        load_recipe(path, STRATEGIES)
    assert load_recipe(path, None).components[1].strategy == "poetry"  # no prompt list: not checked here


def test_weights_within_tolerance_are_accepted(tmp_path):
    path = write_recipe(
        tmp_path,
        components=[
            ("natural", None, 0.7),
            ("rephrased", "qa", 0.1),
            ("rephrased", "wikipedia", 0.1),
            ("rephrased", "summary", 0.1),
        ],
    )
    assert len(load_recipe(path, STRATEGIES).components) == 4  # 0.7 + 0.1 + 0.1 + 0.1 is 0.9999999999999999


def test_a_file_that_is_not_toml_is_named(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("budget_tokens = = 3\n")
    with pytest.raises(RecipeError, match="broken.toml: not valid TOML"):
        load_recipe(path)


def test_sweep_points_become_variants_that_split_the_synthetic_share_by_weight():
    base = parse_recipe(
        recipe(
            sweep=[0, 20, 100],
            components=[
                *COMPONENTS[:1],
                {"source": "rephrased", "strategy": "qa", "weight": 0.1},
                {**COMPONENTS[1], "weight": 0.2},
            ],
        ),
        "mix",
    )
    variants = {v.name: {c.label: c.weight for c in v.components} for v in base.variants()}
    assert list(variants) == ["mix", "mix-syn0", "mix-syn20", "mix-syn100"]
    assert variants["mix-syn0"] == {"natural": 1.0}
    assert variants["mix-syn20"] == pytest.approx({"natural": 0.8, "qa": 0.2 / 3, "wikipedia": 0.4 / 3})
    assert variants["mix-syn100"] == pytest.approx({"qa": 1 / 3, "wikipedia": 2 / 3})


def test_a_component_too_small_even_after_repetition_names_needed_and_available_tokens():
    r = parse_recipe(recipe(budget_tokens=10_000, max_repetition=2.0), "mix", "mix.toml")
    assert check_availability(r, {"natural": 7000, "wikipedia": 1500}, {"natural": 9, "wikipedia": 3}) == {
        "natural": 7000,
        "wikipedia": 3000,
    }
    with pytest.raises(RecipeError) as err:
        check_availability(r, {"natural": 7000, "wikipedia": 1000}, {"natural": 9, "wikipedia": 3})
    message = str(err.value)
    assert (
        "component 'wikipedia' needs 3,000 tokens but has 1,000 available" in message and "max_repetition 2" in message
    )
    assert "'natural'" not in message


def test_an_empty_component_is_named():
    r = parse_recipe(recipe(), "mix", "mix.toml")
    with pytest.raises(RecipeError, match="component 'wikipedia' is empty"):
        check_availability(r, {"natural": 7000}, {"natural": 9})


def test_a_budget_too_small_for_any_whole_token_is_refused():
    r = parse_recipe(
        recipe(budget_tokens=1, components=[{"source": "natural", "weight": 0.4}, {**COMPONENTS[1], "weight": 0.6}]),
        "mix",
        "mix.toml",
    )
    assert check_availability(r, {"natural": 10, "wikipedia": 10}, {"natural": 1, "wikipedia": 1}) == {
        "natural": 0,
        "wikipedia": 1,
    }
    three = [
        {"source": "natural", "weight": 0.3},
        {**COMPONENTS[1], "weight": 0.3},
        {"source": "rephrased", "strategy": "qa", "weight": 0.4},
    ]
    tiny = parse_recipe(recipe(budget_tokens=1, components=three), "mix", "mix.toml")
    with pytest.raises(RecipeError, match="`budget_tokens`: 1 tokens give no component a whole token"):
        check_availability(tiny, {"natural": 10, "wikipedia": 10, "qa": 10}, {"natural": 1, "wikipedia": 1, "qa": 1})


def test_a_missing_recipe_file_lists_the_recipes_that_exist(tmp_path):
    write_recipe(tmp_path, name="small")
    with pytest.raises(RecipeError, match=r"demo.toml: recipe file not found; recipes in .*: \['small'\]"):
        load_recipe(tmp_path / "demo.toml")
