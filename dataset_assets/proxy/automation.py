"""Which proxy runs automation owes: every published version of a mixture whose recipe asks for it
(`evaluate = ["cpu-tiny"]` in recipes/<name>.toml, sweep variants included), each asked spec with
every seed, that has no evaluation yet. Pure: the sensor in defs/evaluation.py asks Dagster what is
published and what is evaluated, and launches what this returns."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dataset_assets.mixtures.recipe import Recipe, RecipeError, load_recipe, recipe_names


def load_wishes(recipes_dir: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """(mixture name -> the proxy specs its recipe asks for, for the recipe and each sweep variant;
    the recipe files that could not be read, as messages: one bad file never hides the others)."""
    recipes, problems = [], []
    for name in recipe_names(recipes_dir):
        try:
            recipes.append(load_recipe(Path(recipes_dir) / f"{name}.toml"))
        except (RecipeError, OSError) as exc:
            problems.append(str(exc))
    return wishes_of(recipes), problems


def wishes_of(recipes: Iterable[Recipe]) -> dict[str, tuple[str, ...]]:
    return {variant.name: recipe.evaluate for recipe in recipes if recipe.evaluate for variant in recipe.variants()}


def owed_runs(
    versions: Iterable[str],
    wishes: dict[str, tuple[str, ...]],
    specs: Iterable[str],
    seeds: int,
    evaluated: set[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[str]]:
    """((version key, proxy key) of every run owed, in order; problems: specs a recipe names that the
    spec folder does not hold). `versions` are `name@vN`; proxy keys `<spec>.s<seed>`."""
    known, owed, problems = set(specs), [], set()
    for version in versions:
        name = version.partition("@")[0]
        for spec in wishes.get(name, ()):
            if spec not in known:
                problems.add(f"recipe of {name} asks for proxy spec {spec!r}, which is not among {sorted(known)}")
                continue
            owed += [(version, f"{spec}.s{s}") for s in range(seeds) if (version, f"{spec}.s{s}") not in evaluated]
    return owed, sorted(problems)
