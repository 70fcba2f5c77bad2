"""TOML files read into pydantic models, with errors that name the file, the field and what is allowed.

Strategy files (`rephrase/strategy_file.py`) and recipes (`mixtures/recipe.py`) declare their
fields as pydantic models. A field carries a `Rule`: the sentence a user reads when its value is
wrong or missing. `first_problem` turns pydantic's first error into a `Problem` that points at the
field as the user wrote it (`steps[0].messages[1].role`) and shows the value from the file.
Checks across fields raise `Invalid` from a model validator; being no `ValueError`, it passes
through pydantic untouched with the field it names.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

_TABLE_ERRORS = {"model_type", "model_attributes_type", "dict_type"}


class Table(BaseModel):
    """A TOML table: unknown keys are errors and values are never coerced (\"1\" is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True)
class Rule:
    """What a field allows, in words; `missing` replaces it when a required field is absent."""

    allowed: str
    missing: Optional[str] = None


class Invalid(Exception):
    """A value that breaks a rule spanning fields; `loc` is the field's path as pydantic writes it.

    `message`, when given, is the whole text after the file name (for problems no single value shows).
    """

    def __init__(self, loc: tuple, value: Any = None, allowed: str = "", message: Optional[str] = None):
        super().__init__(message or allowed)
        self.loc, self.value, self.allowed, self.message = loc, value, allowed, message


@dataclass
class Problem:
    kind: str  # "invalid", "missing", "unknown" or "table"
    where: str  # the field as a user writes it: "sampling.temperature", "steps[0].messages[1].role"
    value: Any = None  # the value in the file
    allowed: str = ""
    keys: list[str] = field(default_factory=list)  # kind "unknown": the keys allowed in that table


def show(value) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_in(annotation) -> Optional[type[BaseModel]]:
    """The model a field holds (itself, in Optional, or as list items), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _rule(info) -> Optional[Rule]:
    """The field's Rule, also from inside Optional[Annotated[..., Rule]]."""
    found = next((m for m in info.metadata if isinstance(m, Rule)), None)
    pending = [info.annotation]
    while found is None and pending:
        annotation = pending.pop()
        found = next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Rule)), None)
        if typing.get_origin(annotation) is typing.Union:
            pending.extend(typing.get_args(annotation))
    return found


def first_problem(model: type[BaseModel], exc: ValidationError, data: Any) -> Problem:
    """The first error of `exc` (from validating `data` with `model`) as the user should read it."""
    errors = exc.errors()
    # A misspelt key first: it is usually why a required key reads as missing.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc, kind = tuple(error["loc"]), error["type"]
    cls, raw, walked = model, data, ()
    for i, part in enumerate(loc):
        if isinstance(part, int):  # a list item: keep the item's model
            raw = raw[part] if isinstance(raw, list) and part < len(raw) else None
            walked += (part,)
            continue
        if cls is None:
            break
        info = cls.model_fields.get(part)
        if info is None:
            return Problem("unknown", where(walked + (part,)), keys=sorted(cls.model_fields))
        value = raw.get(part) if isinstance(raw, dict) else None
        nested = _model_in(info.annotation)
        rest = loc[i + 1 :]
        if kind == "missing" and not rest:
            rule = _rule(info)
            return Problem(
                "missing", where(walked + (part,)), allowed=(rule.missing or rule.allowed) if rule else "required"
            )
        # Stop at a field with a rule unless the error lies inside a table it holds.
        if nested is None or not rest or (all(isinstance(r, int) for r in rest) and kind not in _TABLE_ERRORS):
            if nested is not None and kind in _TABLE_ERRORS:
                return Problem("table", where(walked + (part,)), value, "must be a table")
            rule = _rule(info)
            return Problem("invalid", where(walked + (part,)), value, rule.allowed if rule else error["msg"])
        cls, raw, walked = nested, value, walked + (part,)
    if kind in _TABLE_ERRORS:
        return Problem("table", where(loc), raw, "must be a table")
    return Problem("invalid", where(loc), error.get("input"), error["msg"])
