"""Mixture recipes: recipes/<name>.toml validated into a `Recipe`, its sweep variants, availability.

A recipe (all token counts in the mixture tokenizer's tokens):

    description = "70% natural seeds, 30% rephrased"
    budget_tokens = 50_000      # tokens the mixture holds (within one document per component)
    seed = 0                    # drives every sampling and shuffling choice
    max_repetition = 2.0        # see below
    shard_rows = 2_000          # rows per output Parquet file (the last file holds the rest)
    sweep = [0, 10, 50]         # optional: synthetic share in percent, one published variant each
    shards = ["a.warc.gz"]      # optional: restrict to these crawl shards (default: every shard)
    evaluate = ["cpu-tiny"]     # optional: proxy specs automation trains and scores on every new version

    [[components]]
    source = "natural"          # kept seeds
    weight = 0.7                # share of budget_tokens; weights sum to 1
    [[components]]
    source = "rephrased"
    strategy = "wikipedia"      # a prompts/<strategy>.toml name
    weight = 0.3

Only `budget_tokens` and `components` are required (defaults: seed 0, max_repetition 1.0,
shard_rows 10000); `name` may be given and must equal the file stem. `max_repetition` (>= 1) bounds
how often a component's text is reused: the tokens a component contributes never exceed
`max_repetition` times its available tokens, and a component is used in whole passes (each of its
documents once) plus one partial pass in shuffled order, so no document appears more than
ceil(max_repetition) times. 1.0 means no document twice.

A sweep point p publishes the mixture `<name>-syn<p>` (`demo-syn0.5`, `demo-syn100`): natural gets
1 - p/100 of the budget and the rephrased components share p/100 in proportion to their weights;
a component whose share is 0 is left out. Each variant has its own versions and `latest`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field, ValidationError

from dataset_assets.file_schema import Rule, Table, first_problem

NATURAL = "natural"
REPHRASED = "rephrased"
WEIGHT_TOLERANCE = 1e-6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


class RecipeError(ValueError):
    """A recipe that cannot be built; the message names the file, the field and the fix."""


class UpstreamError(ValueError):
    """The lake lacks what a recipe needs (missing or unfinished upstream partitions)."""


@dataclass(frozen=True)
class Component:
    source: str  # NATURAL or REPHRASED
    weight: float  # share of the budget's tokens
    strategy: Optional[str] = None  # prompt strategy, rephrased only

    @property
    def label(self) -> str:
        """The value of the mixture rows' `component` column: `natural` or the strategy name."""
        return self.strategy or NATURAL


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    budget_tokens: int
    seed: int
    max_repetition: float
    shard_rows: int
    components: tuple[Component, ...]
    sweep: tuple[float, ...] = ()
    shards: Optional[tuple[str, ...]] = None  # None: every shard the lake holds
    path: str = field(default="", compare=False)
    variant_of: Optional[str] = None  # set on sweep variants
    synthetic_percent: Optional[float] = None
    evaluate: tuple[str, ...] = ()  # proxy specs for every new version (never part of the identity)

    def content(self) -> dict:
        """Everything that decides the mixture's rows, canonical: hashed into the version identity."""
        return {
            "name": self.name,
            "description": self.description,
            "budget_tokens": self.budget_tokens,
            "seed": self.seed,
            "max_repetition": self.max_repetition,
            "shard_rows": self.shard_rows,
            "components": [{"source": c.source, "strategy": c.strategy, "weight": c.weight} for c in self.components],
            "sweep": list(self.sweep),
            "shards": list(self.shards) if self.shards is not None else None,
            "variant_of": self.variant_of,
            "synthetic_percent": self.synthetic_percent,
        }

    def targets(self) -> dict[str, int]:
        """Tokens each component must supply."""
        return {c.label: round(c.weight * self.budget_tokens) for c in self.components}

    def variants(self) -> list["Recipe"]:
        """The recipe itself, then one mixture per sweep point."""
        return [self, *(sweep_variant(self, p) for p in self.sweep)]


def variant_name(name: str, percent: float) -> str:
    return f"{name}-syn{percent:g}"


def sweep_variant(recipe: Recipe, percent: float) -> Recipe:
    share = percent / 100.0
    synthetic = [c for c in recipe.components if c.source == REPHRASED]
    total = sum(c.weight for c in synthetic)
    components = []
    for c in recipe.components:
        weight = (1.0 - share) if c.source == NATURAL else share * c.weight / total
        if weight > 0:
            components.append(replace(c, weight=weight))
    return replace(
        recipe,
        name=variant_name(recipe.name, percent),
        components=tuple(components),
        sweep=(),
        variant_of=recipe.name,
        synthetic_percent=float(percent),
    )


def recipe_names(recipes_dir: str) -> list[str]:
    return sorted(p.stem for p in Path(recipes_dir).glob("*.toml"))


def load_recipe(path: str | Path, known_strategies: Optional[Iterable[str]] = None) -> Recipe:
    """Read and validate one recipe file; `known_strategies` None skips the strategy-name check."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            f"{path}: recipe file not found; recipes in {path.parent}: {recipe_names(str(path.parent)) or 'none'}"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from exc
    return parse_recipe(data, path.stem, str(path), known_strategies)


Finite = Annotated[float, Field(allow_inf_nan=False), Rule("expected a number")]
Whole = Annotated[int, Rule("expected an integer")]


class ComponentFile(Table):
    source: Annotated[Literal["natural", "rephrased"], Rule(f"expected {NATURAL!r} or {REPHRASED!r}")]
    strategy: Annotated[
        Optional[str], Rule("a rephrased component needs `strategy`, the name of a prompts/*.toml file")
    ] = None
    weight: Annotated[
        float,
        Field(allow_inf_nan=False),
        Rule("expected a number", missing="missing; give the component's share of the token budget"),
    ]


class RecipeFile(Table):
    """The fields of a recipe file and their types; `parse_recipe` checks ranges and rules across fields."""

    name: Annotated[str, Rule("expected a string")] = ""
    description: Annotated[str, Rule("expected a string")] = ""
    budget_tokens: Annotated[int, Rule("expected an integer", missing="missing")]
    seed: Whole = 0
    max_repetition: Finite = 1.0
    shard_rows: Whole = 10_000
    components: Annotated[list[ComponentFile], Rule("expected at least one [[components]] table")]
    sweep: Annotated[list[Finite], Rule("expected a list of synthetic shares in percent")] = []
    shards: Annotated[
        Optional[list[str]], Rule("expected a non-empty list of shard keys (or leave it out to use every shard)")
    ] = None
    evaluate: Annotated[list[str], Rule("expected a list of proxy spec names (proxies/<name>.toml)")] = []


def _type_problem(where: str, data: Mapping, exc: ValidationError) -> RecipeError:
    problem = first_problem(RecipeFile, exc, dict(data))
    if problem.kind == "unknown":
        return RecipeError(f"{where}: field `{problem.where}`: unknown key; allowed: {problem.keys}")
    if problem.kind == "missing":
        return RecipeError(f"{where}: field `{problem.where}`: {problem.allowed}")
    got = f", got {type(problem.value).__name__} {problem.value!r}" if problem.kind != "table" else ""
    return RecipeError(f"{where}: field `{problem.where}`: {problem.allowed}{got}")


def parse_recipe(
    data: Mapping, name: str, where: str = "<recipe>", known_strategies: Optional[Iterable[str]] = None
) -> Recipe:
    def fail(field_name: str, problem: str) -> RecipeError:
        return RecipeError(f"{where}: field `{field_name}`: {problem}")

    try:
        parsed = RecipeFile.model_validate(dict(data))
    except ValidationError as exc:
        raise _type_problem(where, data, exc) from None
    if not _NAME.match(name) or re.search(r"-syn[0-9.]+$", name):
        raise fail(
            "name",
            f"{name!r} is not a usable mixture name: letters, digits, '_' and '-', not ending in -syn<number> (sweep "
            "variants use that)",
        )
    if "name" in data and parsed.name != name:
        raise fail(
            "name",
            f"{parsed.name!r} differs from the file name {name!r}: the file stem is the mixture name; rename one",
        )
    for key, ok, problem in (
        ("budget_tokens", parsed.budget_tokens > 0, "must be a positive number of tokens"),
        ("seed", parsed.seed >= 0, "must be >= 0"),
        ("shard_rows", parsed.shard_rows > 0, "must be a positive number of rows per file"),
        ("max_repetition", parsed.max_repetition >= 1.0, "must be >= 1.0 (1.0: no document used twice)"),
    ):
        if not ok:
            raise fail(key, f"{problem}, got {getattr(parsed, key)}")

    components = _components(parsed.components, fail, known_strategies)
    total = sum(c.weight for c in components)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        weights = ", ".join(f"{c.label}={c.weight:g}" for c in components)
        raise fail(
            "components.weight", f"weights must sum to 1 (tolerance {WEIGHT_TOLERANCE:g}), got {total:.6g} ({weights})"
        )

    points = _sweep_points(parsed.sweep, components, fail)
    shards = parsed.shards
    if shards is not None:
        if not shards or not all(shards):
            raise fail("shards", "expected a non-empty list of shard keys (or leave it out to use every shard)")
        shards = tuple(sorted(set(shards)))
    return Recipe(
        name,
        parsed.description,
        parsed.budget_tokens,
        parsed.seed,
        parsed.max_repetition,
        parsed.shard_rows,
        components,
        points,
        shards,
        where,
        evaluate=tuple(dict.fromkeys(parsed.evaluate)),
    )


def _sweep_points(sweep: list[float], components: tuple[Component, ...], fail) -> tuple[float, ...]:
    points = tuple(sweep)
    for i, p in enumerate(points):
        if not 0 <= p <= 100:
            raise fail(f"sweep[{i}]", f"a synthetic share in percent must lie in [0, 100], got {p:g}")
    if len(set(points)) != len(points):
        raise fail("sweep", f"repeated points in {list(points)}")
    if points and not ({c.source for c in components} >= {NATURAL, REPHRASED}):
        raise fail(
            "sweep",
            "a sweep varies the natural/rephrased split: the recipe needs a natural and at least one rephrased "
            "component",
        )
    return points


def _components(raw: list[ComponentFile], fail, known_strategies) -> tuple[Component, ...]:
    if not raw:
        raise fail("components", "expected at least one [[components]] table")
    known = sorted(known_strategies) if known_strategies is not None else None
    out: list[Component] = []
    for i, entry in enumerate(raw):
        at = f"components[{i}]"
        source, strategy = entry.source, entry.strategy
        if source == NATURAL and strategy is not None:
            raise fail(f"{at}.strategy", "natural seeds have no strategy; remove it")
        if source == REPHRASED:
            if not strategy:
                raise fail(
                    f"{at}.strategy", "a rephrased component needs `strategy`, the name of a prompts/*.toml file"
                )
            if strategy == NATURAL:
                raise fail(f"{at}.strategy", f"{NATURAL!r} is reserved for the natural component")
            if known is not None and strategy not in known:
                raise fail(f"{at}.strategy", f"unknown strategy {strategy!r}; known strategies: {known}")
        if not 0 < entry.weight <= 1:
            raise fail(f"{at}.weight", f"must be in (0, 1], got {entry.weight:g}")
        component = Component(source, float(entry.weight), strategy)
        if any(c.label == component.label for c in out):
            raise fail(f"{at}", f"component {component.label!r} appears twice; merge the entries")
        out.append(component)
    return tuple(out)
