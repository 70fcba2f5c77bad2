"""Rephrasing strategies: prompts/<name>.toml validated into a `Strategy`, its hash, routing and rendering.

Crawl text reaches a prompt only through `render`, which inserts it literally in one pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

from pydantic import ValidationError

from dataset_assets import settings
from dataset_assets.file_schema import Invalid, Problem, first_problem, show, where
from dataset_assets.rephrase.checks import CheckConfig
from dataset_assets.rephrase.postfilters import Postfilter
from dataset_assets.rephrase.strategy_file import StrategyFile

_FILL = re.compile(r"\{(document|previous|audience)\}")
# Bump when the meaning of a parsed field changes, so every stored prompt_hash goes out of date.
_HASH_VERSION = 1
# How many tokens a cut may move back to land between words instead of inside one.
_WORD_BACKOFF = 32


class StrategyError(ValueError):
    """A prompts/*.toml file that cannot be used; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Message:
    role: str  # system, user or assistant
    content: str  # may hold {document}, {previous}, {audience}


@dataclass(frozen=True)
class Step:
    name: str
    messages: tuple[Message, ...]  # the last one is the user turn the model answers


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024  # output limit per request
    repetition_penalty: float = 1.0  # vLLM's multiplicative penalty on tokens already present; 1.0 is off
    frequency_penalty: float = 0.0  # OpenAI-style additive penalty per earlier occurrence; 0 is off
    n: int = 1  # samples per source at the last step; the first that passes every row check is the row
    # "retry": one sample at a time, another only while every sample so far failed a row check (tokens
    # per kept row stay those of n = 1); "parallel": n samples at once (vLLM's n, one prefill)
    n_mode: str = "retry"


@dataclass(frozen=True)
class InputLimit:
    max_tokens: int = 2000  # document tokens per request
    overflow: str = "truncate"  # or "segment": consecutive pieces, each rephrased separately


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    method: str  # the published method it follows
    path: str
    steps: tuple[Step, ...]
    sampling: Sampling = Sampling()
    input: InputLimit = InputLimit()
    postfilter: Postfilter = Postfilter()
    checks: CheckConfig = CheckConfig()
    min_percentile: Optional[float] = None  # routes seeds with quality_percentile >= this
    max_percentile: Optional[float] = None  # and < this
    audiences: tuple[str, ...] = ()


def load_strategy(path: Union[str, Path]) -> Strategy:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StrategyError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise StrategyError(f"{path}: not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StrategyError(f"{path}: invalid TOML: {exc}") from exc
    return _parse(data, str(path), path.stem)


def load_strategies(directory: Union[str, Path, None] = None) -> dict[str, Strategy]:
    """Every *.toml in the directory (default: settings.prompts_dir()), by name in sorted order."""
    directory = Path(directory or settings.prompts_dir())
    if not directory.is_dir():
        raise StrategyError(f"{directory}: not a directory of strategy files (set REPHRASE_PROMPTS)")
    loaded = [load_strategy(p) for p in sorted(directory.glob("*.toml"))]
    return {s.name: s for s in sorted(loaded, key=lambda s: s.name)}


def prompt_hash(strategy: Strategy) -> str:
    """16 hex chars over the parsed values that shape generation or filtering (not name or prose)."""
    fields = asdict(strategy)
    for key in ("name", "description", "method", "path"):
        fields.pop(key)
    fields["hash_version"] = _HASH_VERSION
    # Fields added later hash only when set, so files that do not use them keep their hash.
    for key, default in (("repetition_penalty", 1.0), ("frequency_penalty", 0.0), ("n", 1), ("n_mode", "retry")):
        if fields["sampling"].get(key) == default:
            fields["sampling"].pop(key)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def render(
    step_messages: Sequence[Union[Message, Mapping[str, str]]], values: Mapping[str, str]
) -> list[dict[str, str]]:
    """Chat messages with placeholders filled literally: inserted text is never scanned again."""

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"render: no value for {{{key}}}; pass it in values")
        return values[key]  # a function's return value is used verbatim by re.sub (no \1 or \g<>)

    out = []
    for m in step_messages:
        role, content = (m["role"], m["content"]) if isinstance(m, Mapping) else (m.role, m.content)
        out.append({"role": role, "content": _FILL.sub(fill, content)})
    return out


def routes(strategy: Strategy, percentile: Optional[float]) -> bool:
    """True when a seed with this quality_percentile goes to the strategy: min <= p < max."""
    if strategy.min_percentile is None and strategy.max_percentile is None:
        return True
    if percentile is None or math.isnan(percentile):
        return False  # an unscored seed cannot be routed by score
    if strategy.min_percentile is not None and percentile < strategy.min_percentile:
        return False
    return strategy.max_percentile is None or percentile < strategy.max_percentile


def audience_for(strategy: Strategy, doc_id: str) -> Optional[str]:
    """The audience of a document, the same on every run and machine (sha256, not hash())."""
    if not strategy.audiences:
        return None
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return strategy.audiences[int.from_bytes(digest[:8], "big") % len(strategy.audiences)]


def fit_input(text: str, tokenizer, max_tokens: int, overflow: str = "truncate") -> list[str]:
    """The document cut to the input limit: one piece (truncate) or consecutive pieces (segment)."""
    if overflow not in ("truncate", "segment"):
        raise ValueError(f"fit_input: overflow = {overflow!r}: must be 'truncate' or 'segment'")
    if max_tokens < 1:
        raise ValueError(f"fit_input: max_tokens = {max_tokens}: must be at least 1")
    ids = _encode(tokenizer, text)
    if len(ids) <= max_tokens:
        return [text]
    decode = _decoder(tokenizer)
    # Balanced pieces, so a document just over the limit does not leave a tiny tail.
    size = math.ceil(len(ids) / math.ceil(len(ids) / max_tokens)) if overflow == "segment" else max_tokens
    pieces = _exact_pieces(text, ids, decode, size, overflow == "truncate")
    if pieces is None:  # the tokenizer does not round-trip this text: fall back to decoded slices
        stop = max_tokens if overflow == "truncate" else len(ids)
        pieces = [decode(ids[i : min(i + size, stop)]) for i in range(0, stop, size)]
    return pieces


def _encode(tokenizer, text: str) -> list[int]:
    """Token ids of the text alone: a transformers or tokenizers tokenizer would add BOS by default."""
    try:
        encoded = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:  # a plain encode(str), e.g. tiktoken or a wrapper
        encoded = tokenizer.encode(text)
    return list(getattr(encoded, "ids", encoded))


def _decoder(tokenizer):
    """decode(ids) that gives the text back: transformers would tidy " ," into "," by default."""
    try:
        tokenizer.decode([], clean_up_tokenization_spaces=False)
    except TypeError:
        return tokenizer.decode
    return lambda ids: tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def _exact_pieces(text: str, ids: list[int], decode, size: int, first_only: bool) -> Optional[list[str]]:
    """Pieces that are exact substrings of `text`, or None when decoded slices are not."""
    pieces, start, pos = [], 0, 0
    while start < len(ids):
        cut = _cut(text, ids, decode, start, min(start + size, len(ids)), pos)
        if cut is None:
            return None
        start, piece = cut
        pieces.append(piece)
        pos += len(piece)
        if first_only:
            return pieces
    return pieces if pos == len(text) else None


def _cut(text: str, ids: list[int], decode, start: int, stop: int, pos: int) -> Optional[tuple[int, str]]:
    """(end, piece) for the longest clean piece ids[start:end], end <= stop, best at a word boundary."""
    fallback = None
    # Stepping back a few tokens finds a word boundary in most scripts; a cut inside a multi-byte
    # character decodes to U+FFFD, which is not a prefix of the text, so such a cut is never taken.
    for end in range(stop, max(start, stop - _WORD_BACKOFF), -1):
        piece = decode(ids[start:end])
        if not piece or not text.startswith(piece, pos):
            continue
        after = pos + len(piece)
        if end == len(ids) or after == len(text) or text[after].isspace() or piece[-1].isspace():
            return end, piece
        fallback = fallback or (end, piece)
    return fallback


def _parse(data: dict, path: str, stem: str) -> Strategy:
    """The file's tables validated by `StrategyFile`, as the frozen dataclasses prompt_hash reads."""
    try:
        parsed = StrategyFile.model_validate(data, context={"stem": stem})
    except ValidationError as exc:
        problem = first_problem(StrategyFile, exc, data)
        raise StrategyError(_message(path, problem)) from None
    except Invalid as exc:
        raise StrategyError(
            f"{path}: {exc.message}" if exc.message else f"{path}: {where(exc.loc)} = {show(exc.value)}: {exc.allowed}"
        ) from None
    routing = parsed.routing
    return Strategy(
        name=parsed.name,
        description=parsed.description,
        method=parsed.method,
        path=path,
        steps=tuple(Step(st.name, tuple(Message(m.role, m.content) for m in st.messages)) for st in parsed.steps),
        sampling=Sampling(**parsed.sampling.model_dump()),
        input=InputLimit(**parsed.input.model_dump()),
        postfilter=Postfilter(**{**parsed.postfilter.model_dump(), "require": tuple(parsed.postfilter.require)}),
        checks=CheckConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in parsed.checks.model_dump().items()}
        ),
        min_percentile=routing.min_percentile if routing else None,
        max_percentile=routing.max_percentile if routing else None,
        audiences=tuple(parsed.audiences),
    )


def _message(path: str, problem: Problem) -> str:
    if problem.kind == "unknown":
        prefix, _, key = problem.where.rpartition(".")
        shown = f"{prefix}.{key}" if prefix else key
        return f"{path}: unknown key {shown}: allowed keys here are {', '.join(problem.keys)}"
    if problem.kind == "missing":
        return f"{path}: {problem.where} is missing: {problem.allowed}"
    return f"{path}: {problem.where or 'file'} = {show(problem.value)}: {problem.allowed}"
