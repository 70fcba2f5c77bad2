"""Checks on generated text: each rephrased row against its source, each partition against itself.

Row checks return the names of the checks a row fails (its `flags`); `drop_reason` is the first of
them in `CHECK_ORDER`. The partition check (`template_duplicate`) needs every row of a partition and
is template-aware: the labels a strategy asks for (`Question:`, `Student:`) and phrases that most of
a partition's outputs share are left out before two outputs are compared, so a shared format never
makes two rephrasings of different documents look alike.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from dataset_assets.rephrase.postfilters import REASONS as POSTFILTER_REASONS

if TYPE_CHECKING:
    from dataset_assets.rephrase.echo import PromptEcho

# The order of every drop reason of a rephrased row: generation and format first (postfilters),
# then the text checks, then the partition check; a row's drop_reason is the first it failed.
CHECK_ORDER = (
    *POSTFILTER_REASONS,
    "prompt_echo",
    "repetition",
    "copied_source",
    "language",
    "unsupported_numbers",
    "template_duplicate",
    "check_error",
)

_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
# A label at the start of a line: "Question:", "**Answer 2:**", "Teacher:" (one to three words).
_LABEL = re.compile(r"^[ \t>#*_\-\d.)]*((?:[A-Za-z][\w’']*[ \t]?){1,3}?)[ \t]*\d*[ \t]*\**:", re.M)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
# Numbers as written: 1,234.5 | 3.14 | 1998 | 25% (the sign and unit are not part of the match).
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[,.]\d+)*(?![\w])")
_ENUMERATOR = re.compile(r"^[ \t>*_\-]*(?:[A-Za-z]+[ \t]+)?\d+[.):][ \t]", re.M)


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of the row and partition checks (a strategy file's `[checks]`); 0 switches a check off."""

    repetition: bool = True
    max_repeated_ngram_share: float = 0.3  # share of words inside word 4-grams that occur more than once
    max_repeated_sentence_share: float = 0.3  # share of characters in sentences/lines that occur more than once
    min_compression_ratio: float = 0.2  # zlib bytes / raw bytes below this is a loop (texts of 400+ chars)
    copied_source: bool = True  # continuation-style strategies switch this off
    max_copied_share: float = 0.8  # share of output word 8-grams found verbatim in the source
    unsupported_numbers: bool = True
    max_unsupported_numbers: int = 1  # numbers (> 10) in the output the source does not have; more than this drops
    language: bool = True
    min_language_score: float = 0.5  # P(source language | output) from lid.176 below this drops
    # English sources: the output's share of function words ("the", "of", "and") against the source's.
    # Prose keeps it near 1x (measured 0.55x-1.6x on SmolLM2 output); token noise that lid.176 still
    # calls English has none. Tables and terse lists may set it lower.
    min_function_word_ratio: float = 0.3
    prompt_echo: bool = True
    echo_labels: tuple[str, ...] = ()  # extra labels that must never appear at a line start of an output
    template_duplicate: bool = True
    duplicate_jaccard: float = 0.5  # word 5-gram Jaccard (labels and shared phrases left out) at or above this
    template_phrase_share: float = 0.5  # a 5-gram in at least this share of a partition's rows is template
    # Partition asset checks: WARN and ERROR levels (a partition under min_rows rows is not judged).
    min_rows: int = 5
    warn_kept_share: float = 0.3
    error_kept_share: float = 0.05
    warn_template_duplicate_share: float = 0.1
    error_template_duplicate_share: float = 0.3
    warn_repetition_share: float = 0.2
    error_repetition_share: float = 0.5


@dataclass
class RowScores:
    """What the row checks measured; stored with the row so partition measures survive a resume."""

    flags: list[str] = field(default_factory=list)
    repeated_ngram_share: float = 0.0
    compression_ratio: float = 1.0
    copied_share: float = 0.0
    numbers: int = 0
    unsupported_numbers: int = 0
    source_word_share: float = 0.0
    language_score: float = 1.0
    error: Optional[str] = None


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


_QUESTION_LINE = re.compile(r"(?im)^[^\w\n]*(?:question|q|problem)\s*\d*\s*\**:.*$")


def answer_text(text: str) -> str:
    """Q/A output without its question lines: an answer that restates its question ("What is X?" /
    "X is ...") repeats words by design of the format, not by looping."""
    return _QUESTION_LINE.sub(" ", text)


def strip_labels(text: str) -> str:
    """The text without line-start labels ("Question:", "Teacher:"), which a format repeats by design."""
    return _LABEL.sub(" ", text)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_share(tokens: Sequence[str], n: int = 4) -> float:
    """Share of words covered by an n-gram that occurs more than once (Gopher's duplicate n-gram
    fraction, by words): a loop covers most words, ordinary prose almost none."""
    grams = ngrams(tokens, n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    covered = bytearray(len(tokens))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = b"\x01" * n
    return sum(covered) / len(tokens)


def repeated_sentence_share(text: str) -> float:
    """Share of characters in sentences or lines (8+ chars, labels left out) that occur more than once."""
    units = [u.strip().lower() for u in _SENTENCE.findall(strip_labels(text))]
    units = [u for u in units if len(u) >= 8]
    total = sum(len(u) for u in units)
    if not total:
        return 0.0
    counts = Counter(units)
    return sum(len(u) for u in units if counts[u] > 1) / total


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(zlib.compress(raw, 6)) / len(raw) if raw else 1.0


def numbers(text: str) -> list[str]:
    """Numbers in a text, normalised ("1,000" == "1000"), without list enumerators ("1." at a line
    start) and without 0-10, which are mostly counts and enumerations rather than facts."""
    body = _ENUMERATOR.sub(" ", text)
    out = []
    for m in _NUMBER.finditer(body):
        value = m.group(0).replace(",", "").rstrip(".")
        try:
            if float(value) <= 10:
                continue
        except ValueError:
            continue
        out.append(value.lstrip("0") or "0")
    return out


def copied_share(out_tokens: Sequence[str], source_grams: set, n: int = 8) -> float:
    grams = ngrams(out_tokens, n)
    return sum(g in source_grams for g in grams) / len(grams) if grams else 0.0


_STOP = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that these "
    "those he she they we you i his her their our your not no so than then there here which who whom what when where "
    "why how all any each more most some such can will would should could may might must do does did has have "
    "had".split()
)


def function_word_share(tokens: Sequence[str]) -> float:
    return sum(t in _STOP for t in tokens) / len(tokens) if tokens else 0.0


def content_words(tokens: Iterable[str]) -> set[str]:
    return {t for t in tokens if t not in _STOP and len(t) > 2 and not t.isdigit()}


@dataclass
class SourceView:
    """The source a row was generated from (the piece the model saw), analysed once for all its checks."""

    text: str
    tokens: list[str]
    grams8: set
    grams6: set
    numbers: set
    content: set
    lang: Optional[str]
    function_share: float

    @classmethod
    def of(cls, text: str, lang: Optional[str] = None) -> "SourceView":
        tokens = words(text)
        return cls(
            text,
            tokens,
            set(ngrams(tokens, 8)),
            set(ngrams(tokens, 6)),
            set(numbers(text)),
            content_words(tokens),
            lang,
            function_word_share(tokens),
        )


def check_row(text: str, source: SourceView, config: CheckConfig, echo: PromptEcho, language=None) -> RowScores:
    """Every row check on one cleaned output. `language(text) -> {lang: prob}` is lid.176 (injected,
    so unit tests of the other checks need no model)."""
    scores = RowScores()
    tokens = words(text)
    body_tokens = words(strip_labels(answer_text(text)))
    if config.prompt_echo and echo.echoed(text, source.grams6, source.text):
        scores.flags.append("prompt_echo")
    scores.repeated_ngram_share = round(repeated_ngram_share(body_tokens), 4)
    scores.compression_ratio = round(compression_ratio(text), 4)
    if config.repetition and (
        (config.max_repeated_ngram_share and scores.repeated_ngram_share > config.max_repeated_ngram_share)
        or (config.max_repeated_sentence_share and repeated_sentence_share(text) > config.max_repeated_sentence_share)
        or (
            config.min_compression_ratio
            and len(text) >= 400
            and scores.compression_ratio < config.min_compression_ratio
        )
    ):
        scores.flags.append("repetition")
    scores.copied_share = round(copied_share(tokens, source.grams8), 4)
    if config.copied_source and config.max_copied_share and scores.copied_share >= config.max_copied_share:
        scores.flags.append("copied_source")
    if language is not None and source.lang and tokens:
        probs = language(text)
        scores.language_score = round(float(probs.get(source.lang, 0.0)), 4)
        not_prose = (
            source.lang == "en"
            and source.function_share > 0
            and config.min_function_word_ratio
            and function_word_share(body_tokens) < config.min_function_word_ratio * source.function_share
        )
        if config.language and (scores.language_score < config.min_language_score or not_prose):
            scores.flags.append("language")
    found = numbers(text)
    scores.numbers = len(found)
    scores.unsupported_numbers = sum(n not in source.numbers for n in found)
    if config.unsupported_numbers and scores.unsupported_numbers > config.max_unsupported_numbers:
        scores.flags.append("unsupported_numbers")
    if source.content:
        scores.source_word_share = round(len(source.content & content_words(tokens)) / len(source.content), 4)
    return scores


def safe_check_row(text: str, source: SourceView, config: CheckConfig, echo: PromptEcho, language=None) -> RowScores:
    """check_row, except that a check raising on a strange row drops that row, never the partition."""
    try:
        return check_row(text, source, config, echo, language)
    except Exception as exc:  # noqa: BLE001 - any failure of our own checks is this row's drop reason
        return RowScores(flags=["check_error"], error=f"check_error: {type(exc).__name__}: {exc}"[:500])


def first_reason(flags: Sequence[str]) -> Optional[str]:
    """The drop reason of a row: its first flag in CHECK_ORDER; a flag outside the order (an engine
    failure such as `context_length`) comes first as it was given; None for no flags."""
    known = set(flags)
    return next((r for r in CHECK_ORDER if r in known), flags[0] if flags else None)
