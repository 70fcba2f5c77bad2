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

from dataset_assets import settings
from dataset_assets.rephrase.postfilters import Postfilter
from dataset_assets.rephrase.checks import CheckConfig

PLACEHOLDERS = ("document", "previous", "audience")
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
    for key, default in (("repetition_penalty", 1.0), ("frequency_penalty", 0.0)):
        if fields["sampling"].get(key) == default:
            fields["sampling"].pop(key)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def render(step_messages: Sequence[Union[Message, Mapping[str, str]]], values: Mapping[str, str]) -> list[dict[str, str]]:
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


# --- validation: every error names the file, the field and what is allowed ---------------------

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_REQUIRED = object()
_KEYS = {
    "": {"name", "description", "method", "routing", "audiences", "sampling", "input", "steps", "postfilter", "checks"},
    "routing.": {"min_percentile", "max_percentile"},
    "sampling.": {"temperature", "top_p", "max_tokens", "repetition_penalty", "frequency_penalty"},
    "checks.": set(CheckConfig.__dataclass_fields__),
    "input.": {"max_tokens", "overflow"},
    "postfilter.": {"strip_preambles", "min_tokens", "max_length_ratio", "require", "min_pairs", "drop_truncated"},
    "step": {"name", "messages"},
    "message": {"role", "content"},
}


def _show(value) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class _Table:
    """One TOML table of a strategy file, read field by field."""

    def __init__(self, path: str, prefix: str, data, keys: str):
        self.path, self.prefix = path, prefix
        if not isinstance(data, dict):
            raise StrategyError(f"{path}: {prefix.rstrip('.') or 'file'} = {_show(data)}: must be a table")
        allowed = _KEYS[keys]
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise StrategyError(f"{path}: unknown key {prefix}{unknown[0]}: allowed keys here are {', '.join(sorted(allowed))}")
        self.data = data

    def fail(self, key: str, value, allowed: str) -> StrategyError:
        return StrategyError(f"{self.path}: {self.prefix}{key} = {_show(value)}: {allowed}")

    def get(self, key: str, default, allowed: str):
        if key not in self.data:
            if default is _REQUIRED:
                raise StrategyError(f"{self.path}: {self.prefix}{key} is missing: {allowed}")
            return default
        return self.data[key]

    def number(self, key: str, default, lo: float, hi: float, above_lo: bool = False) -> Optional[float]:
        allowed = f"must be a number {'greater than' if above_lo else 'from'} {lo:g} {'and at most' if above_lo else 'to'} {hi:g}"
        value = self.get(key, default, allowed)
        if value is None:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
        if not ok or (above_lo and value == lo):
            raise self.fail(key, value, allowed)
        return float(value)

    def integer(self, key: str, default, lo: int, hi: int) -> Optional[int]:
        allowed = f"must be a whole number from {lo} to {hi}"
        value = self.get(key, default, allowed)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
            raise self.fail(key, value, allowed)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default, "must be true or false")
        if not isinstance(value, bool):
            raise self.fail(key, value, "must be true or false")
        return value

    def text(self, key: str, default=_REQUIRED, choices: tuple[str, ...] = ()) -> str:
        allowed = f"must be one of {', '.join(map(repr, choices))}" if choices else "must be a non-empty string"
        value = self.get(key, default, allowed)
        if not isinstance(value, str) or not value.strip() or (choices and value not in choices):
            raise self.fail(key, value, allowed)
        return value

    def strings(self, key: str, unique: bool = False) -> tuple[str, ...]:
        allowed = f"must be a list of {'distinct ' if unique else ''}non-empty strings"
        value = self.get(key, [], allowed)
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, value, allowed)
        if unique and len(set(value)) != len(value):
            raise self.fail(key, value, allowed)
        return tuple(value)


def _parse(data: dict, path: str, stem: str) -> Strategy:
    top = _Table(path, "", data, "")
    name = top.text("name")
    if name != stem:
        raise top.fail("name", name, f"must equal the file name {stem!r}; rename the file or the strategy")
    if not _NAME.fullmatch(name):
        raise top.fail("name", name, "must be lower-case letters, digits and _, starting with a letter")
    sampling = _Table(path, "sampling.", data.get("sampling", {}), "sampling.")
    limits = _Table(path, "input.", data.get("input", {}), "input.")
    audiences = top.strings("audiences", unique=True)
    return Strategy(
        name=name,
        description=top.text("description"),
        method=top.text("method"),
        path=path,
        steps=_steps(top, audiences),
        sampling=Sampling(
            temperature=sampling.number("temperature", 0.7, 0, 2),
            top_p=sampling.number("top_p", 0.95, 0, 1, above_lo=True),
            max_tokens=sampling.integer("max_tokens", 1024, 1, 131072),
            repetition_penalty=sampling.number("repetition_penalty", 1.0, 0, 2, above_lo=True),
            frequency_penalty=sampling.number("frequency_penalty", 0.0, -2, 2),
        ),
        input=InputLimit(
            max_tokens=limits.integer("max_tokens", 2000, 1, 1_000_000),
            overflow=limits.text("overflow", "truncate", choices=("truncate", "segment")),
        ),
        postfilter=_postfilter(_Table(path, "postfilter.", data.get("postfilter", {}), "postfilter.")),
        checks=_checks(_Table(path, "checks.", data.get("checks", {}), "checks.")),
        **_routing(path, data),
        audiences=audiences,
    )


def _routing(path: str, data: dict) -> dict:
    if "routing" not in data:
        return {}
    routing = _Table(path, "routing.", data["routing"], "routing.")
    low = routing.number("min_percentile", None, 0, 100)
    high = routing.number("max_percentile", None, 0, 100)
    if low is None and high is None:
        raise StrategyError(f"{path}: routing has neither min_percentile nor max_percentile: set one or drop [routing]")
    if low is not None and high is not None and low >= high:
        raise routing.fail("max_percentile", high, f"must be greater than routing.min_percentile ({low:g})")
    return {"min_percentile": low, "max_percentile": high}


def _postfilter(table: _Table) -> Postfilter:
    require = table.strings("require")
    for i, pattern in enumerate(require):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise StrategyError(f"{table.path}: postfilter.require[{i}] = {_show(pattern)}: not a valid regular expression ({exc})") from exc
    return Postfilter(
        strip_preambles=table.boolean("strip_preambles", True),
        min_tokens=table.integer("min_tokens", 50, 0, 1_000_000),
        max_length_ratio=table.number("max_length_ratio", 3.0, 0, 1000),
        require=require,
        min_pairs=table.integer("min_pairs", None, 1, 1000),
        drop_truncated=table.boolean("drop_truncated", False),
    )


def _checks(table: _Table) -> CheckConfig:
    """`[checks]`: each field as in CheckConfig, typed by its default (true/false, whole number, share)."""
    values = {}
    for name, spec in CheckConfig.__dataclass_fields__.items():
        default = spec.default
        if isinstance(default, bool):
            values[name] = table.boolean(name, default)
        elif isinstance(default, int):
            values[name] = table.integer(name, default, 0, 1_000_000)
        elif isinstance(default, float):
            values[name] = table.number(name, default, 0, 1)
        else:
            values[name] = table.strings(name)
    warn_error = (("kept_share", False), ("template_duplicate_share", True), ("repetition_share", True))
    for name, higher_is_bad in warn_error:
        warn, error = values[f"warn_{name}"], values[f"error_{name}"]
        if (error < warn) if higher_is_bad else (error > warn):
            raise table.fail(f"error_{name}", error, f"must be {'at least' if higher_is_bad else 'at most'} checks.warn_{name} ({warn:g})")
    return CheckConfig(**values)


def _steps(top: _Table, audiences: tuple[str, ...]) -> tuple[Step, ...]:
    raw = top.get("steps", _REQUIRED, "add one or more [[steps]] tables with a name and messages")
    if not isinstance(raw, list) or not raw:
        raise top.fail("steps", raw, "must be one or more [[steps]] tables with a name and messages")
    steps, used_anywhere = [], set()
    for i, step_data in enumerate(raw):
        step = _Table(top.path, f"steps[{i}].", step_data, "step")
        allowed = {"document"} | ({"previous"} if i else set()) | ({"audience"} if audiences else set())
        messages, used = _messages(step, allowed)
        if i == 0 and "document" not in used:
            raise StrategyError(f"{top.path}: steps[0].messages never use {{document}}: the first step must insert the document")
        if i and "previous" not in used:
            raise StrategyError(f"{top.path}: steps[{i}].messages never use {{previous}}: a later step must build on the one before")
        steps.append(Step(step.text("name"), messages))
        used_anywhere |= used
    if audiences and "audience" not in used_anywhere:
        raise top.fail("audiences", list(audiences), "is set but no step uses {audience}; use it or drop audiences")
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise top.fail("steps", names, "step names must be distinct")
    return tuple(steps)


def _messages(step: _Table, allowed: set[str]) -> tuple[tuple[Message, ...], set[str]]:
    raw = step.get("messages", _REQUIRED, "must be a list of {role, content} tables")
    if not isinstance(raw, list) or not raw:
        raise step.fail("messages", raw, "must be a non-empty list of {role, content} tables")
    messages, used = [], set()
    for j, message_data in enumerate(raw):
        message = _Table(step.path, f"{step.prefix}messages[{j}].", message_data, "message")
        role = message.text("role", choices=("system", "user", "assistant"))
        content = message.text("content")
        for placeholder in _ANY_PLACEHOLDER.findall(content):
            if placeholder not in allowed:
                shown = ", ".join("{" + p + "}" for p in PLACEHOLDERS if p in allowed)
                raise StrategyError(
                    f"{step.path}: {message.prefix}content uses {{{placeholder}}}: not a placeholder allowed here; "
                    f"allowed in this step: {shown} ({{previous}} only after the first step, {{audience}} only with audiences)"
                )
            used.add(placeholder)
        messages.append(Message(role, content))
    if messages[-1].role != "user":
        raise step.fail(f"messages[{len(raw) - 1}].role", messages[-1].role, "the last message of a step must be 'user' (the model answers it)")
    return tuple(messages), used
