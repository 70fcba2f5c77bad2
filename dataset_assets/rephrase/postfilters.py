"""Post-filters for rephrased text: strip stock preambles, then keep or drop a completion with a reason."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

# Reasons in the order they are checked; a dropped row carries the first one it failed.
REASONS = ("truncated", "empty", "too_short", "too_long", "missing_structure")


@dataclass(frozen=True)
class Postfilter:
    strip_preambles: bool = True  # remove "Sure! Here is ...:" openers and "I hope this helps" closers
    min_tokens: int = 50  # fewer completion tokens than this is `too_short` (Kang et al. drop < 50)
    max_length_ratio: float = 3.0  # completion / input tokens above this is `too_long`; 0 disables
    require: tuple[str, ...] = ()  # regex patterns the output must each match (re.search)
    min_pairs: Optional[int] = None  # at least this many Question:/Answer: pairs
    drop_truncated: bool = False  # drop completions that stopped at the output limit


# Preambles are short lines; anything longer is taken as content.
_MAX_PREAMBLE_CHARS = 200
# An opener word counts only with punctuation after it: "Sure-footed goats ..." is content.
_OPENER = re.compile(r"^(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|alright)\s*(?:[!,.:]|$)", re.I)
_POINTER = re.compile(r"^(?:here|below)(?:'s|\s+is|\s+are)\b|^the following\b", re.I)
# A "Here is ..." line is a preamble when it introduces something or talks about the task itself;
# "Here is the town hall." as the first sentence of a rewrite is content.
_ABOUT_TASK = re.compile(
    r"rewrit|rephras|version|requested|\b(?:the|your|this) (?:text|passage|document|article)\b", re.I
)
_RULE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$")
_CLOSER = re.compile(
    r"^(?:i hope (?:this|that|it|these)|hope (?:this|that) helps|let me know if|feel free to|"
    r"is there anything else|if you (?:have|need|would like|want) (?:any )?(?:more|further|other|anything))",
    re.I,
)
_PAIR_MARKER = re.compile(r"^[ \t>#*_-]*(?:(?P<q>Question)|(?P<a>Answer))(?:\s*\d+)?\s*\**\s*:", re.M)


def _is_preamble(line: str) -> bool:
    bare = line.strip().strip("*_#").strip()
    if not bare or len(bare) > _MAX_PREAMBLE_CHARS:
        return False
    if _OPENER.match(bare):
        return True
    return bool(_POINTER.match(bare)) and (bare.endswith(":") or bool(_ABOUT_TASK.search(bare)))


def strip_preambles(text: str) -> str:
    """The text without stock assistant openers at the start and sign-offs at the end."""
    lines = text.strip().split("\n")
    start, end, removed = 0, len(lines), False
    # A few lines at most: "Sure!" / "Here is the rewritten text:" / "---" then the content.
    for _ in range(4):
        while start < end and not lines[start].strip():
            start += 1
        if start < end and (_is_preamble(lines[start]) or (removed and _RULE.match(lines[start]))):
            start, removed = start + 1, True
        else:
            break
    for _ in range(3):
        while end > start and not lines[end - 1].strip():
            end -= 1
        last = lines[end - 1].strip().strip("*_").strip() if end > start else ""
        if last and len(last) <= _MAX_PREAMBLE_CHARS and (_CLOSER.match(last) or _RULE.match(last)):
            end -= 1
        else:
            break
    return "\n".join(lines[start:end]).strip()


def count_pairs(text: str) -> int:
    """Question:/Answer: pairs: each Answer line that directly follows a Question line counts once."""
    pairs, last = 0, None
    for m in _PAIR_MARKER.finditer(text):
        kind = "q" if m.group("q") else "a"
        pairs += kind == "a" and last == "q"
        last = kind
    return pairs


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def postfilter_flags(
    text: str, finish_reason: Optional[str], completion_tokens: int, input_tokens: Optional[int], postfilter: Postfilter
) -> tuple[list[str], str]:
    """(every postfilter the completion fails, in REASONS order; cleaned text)."""
    cleaned = strip_preambles(text) if postfilter.strip_preambles else text
    flags = []
    if postfilter.drop_truncated and finish_reason == "length":
        flags.append("truncated")
    if not re.search(r"\w", cleaned):  # nothing, whitespace, or punctuation only
        flags.append("empty")
    if completion_tokens < postfilter.min_tokens:
        flags.append("too_short")
    if (
        postfilter.max_length_ratio > 0
        and input_tokens
        and completion_tokens / input_tokens > postfilter.max_length_ratio
    ):
        flags.append("too_long")
    if not all(_compiled(p).search(cleaned) for p in postfilter.require) or (
        postfilter.min_pairs and count_pairs(cleaned) < postfilter.min_pairs
    ):
        flags.append("missing_structure")
    return flags, cleaned


def apply_postfilter(
    text: str, finish_reason: Optional[str], completion_tokens: int, input_tokens: Optional[int], postfilter: Postfilter
) -> tuple[bool, Optional[str], str]:
    """(kept, drop_reason, cleaned_text); a dropped row still gets its cleaned text for inspection."""
    flags, cleaned = postfilter_flags(text, finish_reason, completion_tokens, input_tokens, postfilter)
    return not flags, (flags[0] if flags else None), cleaned
