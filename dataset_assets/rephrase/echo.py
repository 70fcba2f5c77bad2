"""Prompt echo: what an output must not repeat from its prompt (the labels before the inserted text,
6-grams of the instructions and worked examples), talk about "the document" the reader never sees,
and assistant preambles anywhere in the text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dataset_assets.rephrase.checks import ngrams, words

# Assistant talk about the task itself, anywhere in the text (stripping only looks at the edges).
_PREAMBLE_ANYWHERE = re.compile(
    r"\b(?:here(?:'s| is| are) (?:a |an |the |your "
    r")?(?:rewritten|rephrased|revised|summari[sz]ed|requested|shorter)\b|here(?:'s| is| are) (?:a |an |the |your "
    r")?(?:summary|version|rewrite|conversation|dialogue|table|faq)\b[^.\n]{0,40}:|\b(?:has|have) been "
    r"(?:rewritten|rephrased|summari[sz]ed|revised|edited)\b|as an ai\b|i hope this helps|let me know if you)",
    re.I,
)


# Words for the input itself: "The text conveys ..." talks about a document the reader never sees.
META_NOUNS = ("document", "passage", "text", "excerpt")


@dataclass(frozen=True)
class PromptEcho:
    """What an output must not repeat from its prompt: labels and instruction 6-grams."""

    labels: tuple[str, ...]
    instruction_grams: frozenset

    @classmethod
    def from_messages(cls, message_texts: Sequence[str], extra_labels: Sequence[str] = ()) -> "PromptEcho":
        labels, grams = set(label.strip().rstrip(":").lower() for label in extra_labels), set()
        for content in message_texts:
            # "Document:\n{document}": the label right before the inserted text.
            for m in re.finditer(r"(?m)^[ \t]*([A-Za-z][\w ]{0,30}):[ \t]*\n?[ \t]*\{(?:document|previous)\}", content):
                labels.add(m.group(1).strip().lower())
            instructions = re.sub(r"\{(document|previous|audience)\}", " ", content)
            grams.update(ngrams(words(instructions), 6))
        return cls(tuple(sorted(labels)), frozenset(grams))

    def echoed(self, text: str, source_grams6: set, source_text: str = "") -> bool:
        lowered_source = source_text.lower()
        for label in sorted(set(self.labels) | set(META_NOUNS)):
            if re.search(rf"(?im)^[ \t*#>_]*{re.escape(label)}[ \t*]*:", text):
                return True
            # "The passage describes ...": talk about the input instead of its content, meaningless
            # once the input is gone (unless the source itself speaks of such a thing).
            meta = re.search(
                rf"(?i)\b(?:the|this|that|following|given|above|provided|original|rewritten)\s+{re.escape(label)}s?\b",
                text,
            )
            if meta and meta.group(0).lower() not in lowered_source:
                return True
        if self.instruction_grams and any(
            g in self.instruction_grams and g not in source_grams6 for g in ngrams(words(text), 6)
        ):
            return True
        return bool(_PREAMBLE_ANYWHERE.search(text))
