"""What a prompts/<name>.toml file may hold: pydantic models of its tables, and the rules across fields.

`strategies.load_strategy` validates a file with `StrategyFile` and builds the frozen `Strategy`
dataclasses the rest of the code (and the prompt hash) use, so this schema can grow without
changing a stored prompt hash.
"""

from __future__ import annotations

import re
from dataclasses import fields as dataclass_fields
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, ValidationInfo, create_model, field_validator, model_validator

from dataset_assets.file_schema import Invalid, Rule, Table
from dataset_assets.rephrase.checks import CheckConfig

PLACEHOLDERS = ("document", "previous", "audience")
NAME = re.compile(r"[a-z][a-z0-9_]*")
ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    return value


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("repeated")
    return values


def Number(lo: float, hi: float, above_lo: bool = False):
    low = Field(gt=lo) if above_lo else Field(ge=lo)
    words = f"greater than {lo:g} and at most {hi:g}" if above_lo else f"from {lo:g} to {hi:g}"
    return Annotated[float, low, Field(le=hi), Rule(f"must be a number {words}")]


def Integer(lo: int, hi: int):
    return Annotated[int, Field(ge=lo, le=hi), Rule(f"must be a whole number from {lo} to {hi}")]


Boolean = Annotated[bool, Rule("must be true or false")]
Text = Annotated[str, AfterValidator(_nonblank), Rule("must be a non-empty string")]
Strings = Annotated[list[Annotated[str, AfterValidator(_nonblank)]], Rule("must be a list of non-empty strings")]
DistinctStrings = Annotated[
    list[Annotated[str, AfterValidator(_nonblank)]],
    AfterValidator(_distinct),
    Rule("must be a list of distinct non-empty strings"),
]


def Choice(*choices: str):
    return Annotated[Literal.__getitem__(choices), Rule(f"must be one of {', '.join(map(repr, choices))}")]


Overflow = Choice("truncate", "segment")
Role = Choice("system", "user", "assistant")


class SamplingFile(Table):
    temperature: Number(0, 2) = 0.7
    top_p: Number(0, 1, above_lo=True) = 0.95
    max_tokens: Integer(1, 131072) = 1024
    repetition_penalty: Number(0, 2, above_lo=True) = 1.0
    frequency_penalty: Number(-2, 2) = 0.0
    n: Integer(1, 16) = 1  # best of n: samples per source at the last step, the first that passes is kept
    n_mode: Choice("retry", "parallel") = "retry"


class InputFile(Table):
    max_tokens: Integer(1, 1_000_000) = 2000
    overflow: Overflow = "truncate"


class PostfilterFile(Table):
    strip_preambles: Boolean = True
    min_tokens: Integer(0, 1_000_000) = 50
    max_length_ratio: Number(0, 1000) = 3.0
    require: Strings = []
    min_pairs: Optional[Integer(1, 1000)] = None
    drop_truncated: Boolean = False


def _check_field(spec):
    """`[checks]` fields typed by CheckConfig's defaults: true/false, whole number, share, strings."""
    default = spec.default
    if isinstance(default, bool):
        return (Boolean, default)
    if isinstance(default, int):
        return (Integer(0, 1_000_000), default)
    if isinstance(default, float):
        return (Number(0, 1), default)
    return (Strings, list(default))


ChecksFile = create_model(
    "ChecksFile", __base__=Table, **{spec.name: _check_field(spec) for spec in dataclass_fields(CheckConfig)}
)


class RoutingFile(Table):
    min_percentile: Optional[Number(0, 100)] = None
    max_percentile: Optional[Number(0, 100)] = None


class MessageFile(Table):
    role: Role
    content: Text


class StepFile(Table):
    name: Text
    messages: Annotated[
        list[MessageFile],
        Field(min_length=1),
        Rule("must be a non-empty list of {role, content} tables", missing="must be a list of {role, content} tables"),
    ]


class StrategyFile(Table):
    name: Text
    description: Text
    method: Text
    routing: Optional[RoutingFile] = None
    audiences: DistinctStrings = []
    sampling: SamplingFile = SamplingFile()
    input: InputFile = InputFile()
    steps: Annotated[
        list[StepFile],
        Field(min_length=1),
        Rule(
            "must be one or more [[steps]] tables with a name and messages",
            missing="add one or more [[steps]] tables with a name and messages",
        ),
    ]
    postfilter: PostfilterFile = PostfilterFile()
    checks: ChecksFile = ChecksFile()

    @field_validator("name")
    @classmethod
    def _name_is_the_file_name(cls, name: str, info: ValidationInfo) -> str:
        stem = (info.context or {}).get("stem")
        if stem is not None and name != stem:
            raise Invalid(("name",), name, f"must equal the file name {stem!r}; rename the file or the strategy")
        if not NAME.fullmatch(name):
            raise Invalid(("name",), name, "must be lower-case letters, digits and _, starting with a letter")
        return name

    @model_validator(mode="after")
    def _across_fields(self) -> "StrategyFile":
        self._routing()
        for i, pattern in enumerate(self.postfilter.require):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise Invalid(("postfilter", "require", i), pattern, f"not a valid regular expression ({exc})") from exc
        self._check_levels()
        self._steps()
        return self

    def _routing(self) -> None:
        if self.routing is None:
            return
        low, high = self.routing.min_percentile, self.routing.max_percentile
        if low is None and high is None:
            raise Invalid(
                ("routing",), message="routing has neither min_percentile nor max_percentile: set one or drop [routing]"
            )
        if low is not None and high is not None and low >= high:
            raise Invalid(("routing", "max_percentile"), high, f"must be greater than routing.min_percentile ({low:g})")

    def _check_levels(self) -> None:
        for name, higher_is_bad in (
            ("kept_share", False),
            ("template_duplicate_share", True),
            ("repetition_share", True),
        ):
            warn, error = getattr(self.checks, f"warn_{name}"), getattr(self.checks, f"error_{name}")
            if (error < warn) if higher_is_bad else (error > warn):
                bound = "at least" if higher_is_bad else "at most"
                raise Invalid(("checks", f"error_{name}"), error, f"must be {bound} checks.warn_{name} ({warn:g})")

    def _steps(self) -> None:
        used_anywhere: set[str] = set()
        for i, step in enumerate(self.steps):
            allowed = {"document"} | ({"previous"} if i else set()) | ({"audience"} if self.audiences else set())
            used = _placeholders(i, step, allowed)
            if i == 0 and "document" not in used:
                raise Invalid(
                    ("steps", 0),
                    message="steps[0].messages never use {document}: the first step must insert the document",
                )
            if i and "previous" not in used:
                raise Invalid(
                    ("steps", i),
                    message=f"steps[{i}].messages never use {{previous}}: a later step must build on the one before",
                )
            used_anywhere |= used
        if self.audiences and "audience" not in used_anywhere:
            raise Invalid(
                ("audiences",), self.audiences, "is set but no step uses {audience}; use it or drop audiences"
            )
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise Invalid(("steps",), names, "step names must be distinct")


def _placeholders(i: int, step: StepFile, allowed: set[str]) -> set[str]:
    used: set[str] = set()
    for j, message in enumerate(step.messages):
        for placeholder in ANY_PLACEHOLDER.findall(message.content):
            if placeholder not in allowed:
                shown = ", ".join("{" + p + "}" for p in PLACEHOLDERS if p in allowed)
                raise Invalid(
                    ("steps", i, "messages", j, "content"),
                    message=f"steps[{i}].messages[{j}].content uses {{{placeholder}}}: not a placeholder allowed here; "
                    f"allowed in this step: {shown} ({{previous}} only after the first step, {{audience}} only with "
                    "audiences)",
                )
            used.add(placeholder)
    last = len(step.messages) - 1
    if step.messages[last].role != "user":
        raise Invalid(
            ("steps", i, "messages", last, "role"),
            step.messages[last].role,
            "the last message of a step must be 'user' (the model answers it)",
        )
    return used
