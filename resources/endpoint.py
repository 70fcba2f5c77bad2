"""`OpenAIEndpointEngine`: rephrasing through any OpenAI-compatible server (vLLM, SGLang, hosted APIs),
with bounded concurrency, retries with backoff, and input limits measured with the generator's tokenizer."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any, ClassVar, Optional

from pydantic import PrivateAttr

from resources.llm import ChatRequest, Completion, EngineUnavailable, LLMEngine
from resources.tokenizer import load_tokenizer


class EndpointError(EngineUnavailable):
    """The endpoint kept failing after every retry (server down, 5xx, timeouts)."""


class OpenAIEndpointEngine(LLMEngine):
    """An OpenAI-compatible `/v1/chat/completions` server with bounded concurrency and retries."""

    base_url: str  # e.g. http://127.0.0.1:8000/v1
    api_key: Optional[str] = None  # pass dagster.EnvVar("REPHRASE_API_KEY"), never a literal
    max_concurrency: int = 32  # a vLLM server batches what is in flight: at least its max_num_seqs
    max_retries: int = 5
    backoff_seconds: float = 1.0  # first retry wait; doubles each time, with jitter
    timeout_seconds: float = 120.0
    tokenizer_path: Optional[str] = None  # tokenizer.json or model dir for input limits; default: `model` if local

    # OpenAI's and vLLM's servers take `n` and return n choices for one prefill.
    native_n: ClassVar[bool] = True

    _client: Any = PrivateAttr(default=None)
    _loop: Any = PrivateAttr(default=None)
    _tok: Any = PrivateAttr(default=None)

    def _http(self):
        """One async client for the engine's life, on the engine's own event loop: connections (and
        TLS sessions) are reused across chunks, and one thread drives every request in flight,
        which costs the client a fraction of the CPU a thread per request does."""
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(
                base_url=self.base_url.rstrip("/"),
                headers=headers,
                timeout=self.timeout_seconds,
                limits=httpx.Limits(
                    max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
                ),
            )
        return self._client

    def tokenizer(self):
        if self._tok is None:
            path = self.tokenizer_path or self.model
            if not Path(path).exists():
                raise ValueError(
                    f"endpoint engine: set tokenizer_path to the generator's tokenizer.json (model {self.model!r} is "
                    "not a local path)"
                )
            self._tok = load_tokenizer(path)
        return self._tok

    async def _one(self, req: ChatRequest, gate: asyncio.Semaphore) -> Completion:
        import httpx

        body = {
            "model": self.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
        }
        # Sent only when set: frequency_penalty is OpenAI's; repetition_penalty a vLLM/SGLang extension.
        if req.frequency_penalty:
            body["frequency_penalty"] = req.frequency_penalty
        if req.repetition_penalty != 1.0:
            body["repetition_penalty"] = req.repetition_penalty
        if req.n > 1:
            body["n"] = req.n
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                async with gate:  # at most max_concurrency requests in flight; a backoff holds no slot
                    resp = await self._http().post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    return self._completion(req, resp.json())
                if resp.status_code in (400, 404, 413, 422):
                    # The server rejected this request (context too long, bad input): a dropped row.
                    return Completion(req.request_id, "", 0, 0, "error", f"http_{resp.status_code}: {_message(resp)}")
                last = f"http_{resp.status_code}: {_message(resp)}"
            if attempt < self.max_retries:
                await asyncio.sleep(self.backoff_seconds * (2**attempt) * (1 + random.random() * 0.25))
        raise EndpointError(
            f"{self.base_url}: request {req.request_id} failed after {self.max_retries + 1} attempts: {last}"
        )

    def _completion(self, req: ChatRequest, data: dict) -> Completion:
        """The first choice, with the others (n > 1) as `others`. The server reports one completion-token
        count for all choices; it is shared out by each choice's length in the generator's tokenizer."""
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        texts = [c["message"].get("content") or "" for c in choices]
        total = int(usage.get("completion_tokens", 0))
        lengths = [len(ids) for ids in self.tokenizer().encode_batch(texts)] if len(texts) > 1 else [1]
        shares = _share(total, lengths)
        first, *others = [
            Completion(
                req.request_id,
                text,
                int(usage.get("prompt_tokens", 0)) if k == 0 else 0,
                tokens,
                choice.get("finish_reason") or "stop",
            )
            for k, (text, tokens, choice) in enumerate(zip(texts, shares, choices))
        ]
        first.others = others
        return first

    async def _all(self, requests: list[ChatRequest]) -> list[Completion]:
        gate = asyncio.Semaphore(self.max_concurrency)
        try:
            async with asyncio.TaskGroup() as group:  # one request failing for good cancels the rest
                tasks = [group.create_task(self._one(req, gate)) for req in requests]
        except BaseExceptionGroup as failed:  # the first failure as itself, not wrapped in a group
            raise failed.exceptions[0] from None
        return [t.result() for t in tasks]

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: a Dagster step, a script
            return self._loop.run_until_complete(self._all(requests))
        # Called from inside a running event loop (a notebook): drive ours from another thread.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(self._loop.run_until_complete, self._all(requests)).result()

    def close(self) -> None:
        if self._client is not None and self._loop is not None:
            self._loop.run_until_complete(self._client.aclose())
        self._client = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def _share(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (whole numbers that add up to `total`)."""
    whole = sum(weights)
    if whole <= 0:
        return [total // len(weights) + (1 if k < total % len(weights) else 0) for k in range(len(weights))]
    parts = [total * w // whole for w in weights]
    for k in sorted(range(len(weights)), key=lambda k: -(total * weights[k] % whole))[: total - sum(parts)]:
        parts[k] += 1
    return parts


def _message(resp) -> str:
    try:
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        return str(msg)[:300]
    except (ValueError, json.JSONDecodeError):
        return resp.text[:300]
