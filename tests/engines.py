"""A test double of the engine interface, for unit tests of planning, chunking, filters and resume."""

from __future__ import annotations

import json
import os
import time
from typing import Optional

from pydantic import PrivateAttr

from resources.llm import ChatRequest, Completion, LLMEngine, TextTokenizer
from tests.conftest import SHARED


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
        return TextTokenizer(str(SHARED / "tokenizers" / "gpt2-tokenizer.json"))

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
            words = req.messages[-1]["content"].split()[:30]
            text = "\n".join(f"Question: what about {w}?\nAnswer: {w} is described in the passage in some detail here." for w in words[:8])
            out.append(Completion(req.request_id, text, len(" ".join(m["content"] for m in req.messages).split()), 120, "stop"))
        return out
