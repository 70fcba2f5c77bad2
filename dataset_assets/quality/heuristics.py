"""Gopher-style quality rules (Rae et al. 2021): each failing rule is its own drop reason."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*", re.UNICODE)  # a word with at least one letter
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})


@dataclass
class GopherRules:
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1  # '#' and '...' per word
    max_ellipsis_line_fraction: float = 0.3
    min_alpha_word_fraction: float = 0.8
    min_stop_words: int = 2


def gopher_reason(text: str, rules: GopherRules) -> Optional[str]:
    """The first rule the text fails, as `gopher_<rule>`, or None when it passes them all."""
    words = text.split()
    n = len(words)
    if n < rules.min_words or n > rules.max_words:
        return "gopher_word_count"
    mean_len = sum(len(w) for w in words) / n
    if not rules.min_mean_word_length <= mean_len <= rules.max_mean_word_length:
        return "gopher_mean_word_length"
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / n > rules.max_symbol_word_ratio:
        return "gopher_symbol_ratio"
    lines = [line for line in text.split("\n") if line.strip()]
    if lines:
        ellipsis_lines = sum(line.rstrip().endswith(("...", "\u2026")) for line in lines)
        if ellipsis_lines / len(lines) > rules.max_ellipsis_line_fraction:
            return "gopher_ellipsis_lines"
    alpha = len(_ALPHA_WORD.findall(text))
    if alpha / n < rules.min_alpha_word_fraction:
        return "gopher_alpha_words"
    present = {w.strip(".,;:!?\"'()").lower() for w in words if len(w) <= 6} & STOP_WORDS
    if len(present) < rules.min_stop_words:
        return "gopher_stop_words"
    return None
