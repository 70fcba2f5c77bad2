"""No evaluation text is ever trained on: a mixture row that shares a word 13-gram with an
evaluation text (as GPT-3 and Marin check), or contains a whole evaluation sentence too short to have
one (BLiMP's minimal pairs), is left out before tokenizing, and counted."""

from __future__ import annotations

import re

import xxhash

NGRAM = 13
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(words: list[str]) -> set[int]:
    return {xxhash.xxh64_intdigest(" ".join(words[i : i + NGRAM]).encode()) for i in range(len(words) - NGRAM + 1)}


def _sentence_key(sentence: str) -> str:
    return " ".join(_words(sentence))


class Contamination:
    """The 13-grams of every evaluation text and the short sentences of every evaluation set."""

    def __init__(self, eval_sets: list):
        self.grams: set[int] = set()
        self.sentences: set[str] = set()
        for s in eval_sets:
            for text in s.texts():
                words = _words(text)
                if len(words) >= NGRAM:
                    self.grams |= _grams(words)
                elif len(words) >= 4:  # a sentence too short for a 13-gram, long enough to be telling
                    self.sentences.add(" ".join(words))

    def __call__(self, text: str) -> bool:
        words = _words(text)
        if self.grams and len(words) >= NGRAM and not self.grams.isdisjoint(_grams(words)):
            return True
        return bool(self.sentences) and any(_sentence_key(s) in self.sentences for s in _SENTENCE.findall(text))
