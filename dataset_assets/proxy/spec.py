"""What a proxies/<name>.toml file may hold: a small model to train on a mixture and how to train it.

Validated like strategy files: a bad file fails loading with the file, the field and what is allowed.
Tiers: `cpu-tiny` trains here (byte-level Llama shape from `transformers`, one torch thread); the GPU
tiers (`gpu-small`, `cluster`) run OLMo-core in their own environment, launched through Dagster Pipes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, ValidationError, model_validator

from dataset_assets.file_schema import Invalid, Problem, Rule, Table, first_problem, show, where

TIERS = ("cpu-tiny", "gpu-small", "cluster")
BYTES = "bytes"  # the byte-level tokenizer: UTF-8 bytes 0-255, end of document 256
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class ProxySpecError(ValueError):
    """A proxy spec that cannot be used; the message names the file and the field."""


def _int(lo: int, hi: int):
    return Annotated[int, Field(ge=lo, le=hi), Rule(f"must be a whole number from {lo:,} to {hi:,}")]


def _number(lo: float, hi: float):
    return Annotated[float, Field(gt=lo, le=hi), Rule(f"must be a number greater than {lo:g} and at most {hi:g}")]


class ModelFile(Table):
    d_model: _int(16, 8192) = 128
    layers: _int(1, 96) = 2
    heads: _int(1, 128) = 4
    mlp_ratio: _int(1, 16) = 4


class TrainingFile(Table):
    tokens: _int(1_000, 10**13) = 1_000_000  # the training budget in tokens
    batch_size: _int(1, 4096) = 16  # sequences per step
    sequence_length: _int(16, 65536) = 256
    learning_rate: _number(0, 1) = 3e-3
    warmup_fraction: Annotated[float, Field(ge=0, lt=1), Rule("must be a number from 0 to below 1")] = 0.05
    weight_decay: Annotated[float, Field(ge=0, le=1), Rule("must be a number from 0 to 1")] = 0.1
    schedule: Annotated[Literal["cosine", "constant"], Rule("must be one of 'cosine', 'constant'")] = "cosine"
    # A budget above the mixture's tokens repeats it (epochs); above this many the spec is refused.
    max_epochs: _number(0, 1000) = 20.0
    checkpoint_every: _int(1, 10**7) = 50  # steps between checkpoints (the unit of resume)
    threads: _int(1, 256) = 1  # torch threads per proxy (cpu-tiny): one proxy per free core


class EvaluationFile(Table):
    bytes_per_set: _int(1_000, 10**9) = 100_000  # bits-per-byte reads at most this much of each text set
    blimp_pairs: _int(0, 10**6) = 6_700  # BLiMP pairs scored at most (spread over the phenomena)
    choice_questions: _int(0, 10**6) = 500  # questions of each multiple-choice set scored at most


class LaunchFile(Table):
    """GPU tiers: the command run through Dagster Pipes in the tier's own environment."""

    command: Annotated[list[str], Field(min_length=1), Rule("must be a non-empty list of strings (argv)")]
    pool: Annotated[str, Rule("must be a string")] = "gpu"


class ProxyFile(Table):
    name: Annotated[str, Rule("must be lower-case letters, digits, '_' or '-' (at most 40), the file's stem")]
    description: Annotated[str, Rule("must be a string")] = ""
    tier: Annotated[Literal[TIERS], Rule(f"must be one of {', '.join(map(repr, TIERS))}")] = "cpu-tiny"
    tokenizer: Annotated[str, Rule(f"must be {BYTES!r} or a tokenizer.json path")] = BYTES
    model: ModelFile = ModelFile()
    training: TrainingFile = TrainingFile()
    evaluation: EvaluationFile = EvaluationFile()
    launch: Optional[LaunchFile] = None

    @model_validator(mode="after")
    def _consistent(self, info) -> "ProxyFile":
        stem = (info.context or {}).get("stem")
        if not NAME.match(self.name) or (stem and self.name != stem):
            raise Invalid(
                ("name",), self.name, f"must match the file's stem {stem!r} (lower-case letters, digits, _ -)"
            )
        if self.model.d_model % self.model.heads:
            raise Invalid(("model", "heads"), self.model.heads, f"must divide model.d_model ({self.model.d_model})")
        if self.tier == "cpu-tiny" and self.launch is not None:
            raise Invalid(("launch",), "table", "is for the GPU tiers only: cpu-tiny trains in process")
        if self.tier != "cpu-tiny" and self.launch is None:
            raise Invalid(("launch",), None, f"is required for tier {self.tier!r}: the command Dagster Pipes runs")
        return self


@dataclass(frozen=True)
class ProxySpec:
    name: str
    description: str
    tier: str
    tokenizer: str
    d_model: int
    layers: int
    heads: int
    mlp_ratio: int
    tokens: int
    batch_size: int
    sequence_length: int
    learning_rate: float
    warmup_fraction: float
    weight_decay: float
    schedule: str
    max_epochs: float
    checkpoint_every: int
    threads: int
    bytes_per_set: int
    blimp_pairs: int
    choice_questions: int = 500
    command: tuple[str, ...] = ()
    pool: str = ""
    path: str = ""

    def with_tokens(self, tokens: Optional[int]) -> "ProxySpec":
        return self if tokens is None else ProxySpec(**{**asdict(self), "tokens": int(tokens)})

    def digest(self) -> str:
        """16 hex chars over what shapes training (not the name, description, path or choice_questions, an
        evaluation setting added after runs were recorded with this digest)."""
        skip = ("name", "description", "path", "choice_questions")
        values = {k: v for k, v in asdict(self).items() if k not in skip}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def tokens_per_step(self) -> int:
        return self.batch_size * self.sequence_length


def parse_spec(data: dict, path: str, stem: str) -> ProxySpec:
    try:
        parsed = ProxyFile.model_validate(data, context={"stem": stem})
    except ValidationError as exc:
        raise ProxySpecError(_message(path, first_problem(ProxyFile, exc, data))) from None
    except Invalid as exc:
        text = exc.message or f"{where(exc.loc)} = {show(exc.value)}: {exc.allowed}"
        raise ProxySpecError(f"{path}: {text}") from None
    launch = parsed.launch
    return ProxySpec(
        name=parsed.name,
        description=parsed.description,
        tier=parsed.tier,
        tokenizer=parsed.tokenizer,
        **parsed.model.model_dump(),
        **parsed.training.model_dump(),
        **parsed.evaluation.model_dump(),
        command=tuple(launch.command) if launch else (),
        pool=launch.pool if launch else "",
        path=path,
    )


def _message(path: str, problem: Problem) -> str:
    if problem.kind == "unknown":
        return f"{path}: unknown key {problem.where}: allowed keys here are {', '.join(problem.keys)}"
    if problem.kind == "missing":
        return f"{path}: {problem.where} is missing: {problem.allowed}"
    return f"{path}: {problem.where or 'file'} = {show(problem.value)}: {problem.allowed}"


def load_spec(path: Union[str, Path]) -> ProxySpec:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProxySpecError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProxySpecError(f"{path}: invalid TOML: {exc}") from exc
    return parse_spec(data, str(path), path.stem)


def load_specs(directory: Union[str, Path]) -> dict[str, ProxySpec]:
    """Every *.toml in the folder, by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ProxySpecError(f"{directory}: not a folder of proxy specs (set PROXY_SPECS)")
    return {s.name: s for s in (load_spec(p) for p in sorted(directory.glob("*.toml")))}
