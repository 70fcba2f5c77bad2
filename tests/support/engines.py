"""A test double of the engine interface, for unit tests of planning, chunking, filters and resume."""

from __future__ import annotations

import json
import os
import time
from typing import Optional

from pydantic import PrivateAttr

from resources.llm import ChatRequest, Completion, LLMEngine
from resources.tokenizer import load_tokenizer
from tests.conftest import SHARED

QUESTIONS = (
    "What is said about",
    "Why would anyone mention",
    "Where does one find",
    "Who cares about",
    "When was there talk of",
    "How is it described:",
    "Which detail concerns",
    "What follows from",
)


def scripted_answer(prompt: str) -> str:
    """Well-formed Q/A text made from the prompt's own words: different for every document, with no
    loops and no verbatim 8-word copy of the source, so it passes the synthetic-text checks."""
    words = prompt.split()
    pairs = []
    for i, question in enumerate(QUESTIONS):
        span = words[-(i + 1) * 7 : len(words) - i * 7][::-1]  # the document's last words, reversed
        pairs.append(f"Question: {question} {words[-(i + 1)].strip('.,')}?\nAnswer: {' '.join(span)}.")
    return "\n".join(pairs)


class ScriptedEngine(LLMEngine):
    """Answers every request with well-formed Q/A text; can fail chosen requests, log each request to
    a file (one JSON line, flushed, so a SIGKILLed process leaves an exact count) and go slowly."""

    model: str = "scripted-engine"
    revision: Optional[str] = "1"
    fail_ids: list[str] = []  # request ids (or their item-id prefix) whose batch raises
    request_log: Optional[str] = None
    delay_seconds: float = 0.0

    _seen: list[ChatRequest] = PrivateAttr(default_factory=list)

    @property
    def seen(self) -> list[ChatRequest]:
        return self._seen

    def tokenizer(self):
        return load_tokenizer(str(SHARED / "tokenizers" / "gpt2-tokenizer.json"))

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if any(r.request_id.split(":")[0] in self.fail_ids for r in requests):
            raise RuntimeError("engine failed this batch")
        out = []
        for req in requests:
            self._seen.append(req)
            if self.request_log:
                with open(self.request_log, "a") as f:
                    f.write(json.dumps({"id": req.request_id, "pid": os.getpid()}) + "\n")
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            text = scripted_answer(req.messages[-1]["content"])
            out.append(
                Completion(req.request_id, text, len(" ".join(m["content"] for m in req.messages).split()), 120, "stop")
            )
        return out
