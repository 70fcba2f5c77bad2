"""The OpenAI-compatible endpoint engine: retries and timeouts against a scripted local server, and
real generation against `vllm.entrypoints.openai.api_server` (vllm-cpu) on the tiny model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dataset_assets.crawl.langid import language_probabilities
from resources.endpoint import EndpointError, OpenAIEndpointEngine
from resources.llm import ChatRequest
from tests.conftest import SHARED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Script:
    """What the scripted server answers, request by request: an HTTP status, 'sleep' or 'ok'."""

    def __init__(self, steps: list):
        self.steps, self.calls, self.lock = list(steps), 0, threading.Lock()

    def next(self):
        with self.lock:
            self.calls += 1
            return self.steps.pop(0) if self.steps else "ok"


@pytest.fixture
def scripted_server():
    servers = []

    def start(steps: list):
        script = Script(steps)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                step = script.next()
                if step == "sleep":
                    time.sleep(1.5)
                    step = "ok"
                if step == "no_choices":  # a 200 that is not a chat completion
                    data, status = b'{"object": "error"}', 200
                elif step == "ok":
                    text = "Rewritten: " + body["messages"][-1]["content"][:40]
                    n = body.get("n", 1)  # sample k repeats the text k times, so the samples differ in length
                    payload = {
                        "choices": [
                            {"index": k, "message": {"role": "assistant", "content": " ".join([text] * (k + 1))}}
                            | {"finish_reason": "stop"}
                            for k in range(n)
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7 * n * (n + 1) // 2},
                    }
                    data, status = json.dumps(payload).encode(), 200
                else:
                    data, status = json.dumps({"error": {"message": f"scripted {step}"}}).encode(), int(step)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", script

    yield start
    for server in servers:
        server.shutdown()


def engine_for(url: str, **kw) -> OpenAIEndpointEngine:
    eng = OpenAIEndpointEngine(base_url=url, model="m", backoff_seconds=0.01, **kw)
    return eng


def req(i: int) -> ChatRequest:
    return ChatRequest(f"r{i}", [{"role": "user", "content": f"document {i}"}], max_tokens=16)


def test_n_samples_come_back_from_one_request_with_the_billed_tokens_shared_by_length(scripted_server):
    url, script = scripted_server([])
    eng = engine_for(url, tokenizer_path=str(SHARED / "tokenizers" / "gpt2-tokenizer.json"))
    one, plain = eng.generate([ChatRequest("r0", [{"role": "user", "content": "document 0"}], 16, n=3), req(1)])
    assert script.calls == 2 and eng.requests_sent == 2  # one HTTP request per chat request, n or not
    samples = [one, *one.others]
    assert [s.text.count("Rewritten:") for s in samples] == [1, 2, 3]
    assert [s.prompt_tokens for s in samples] == [11, 0, 0]  # one prefill
    assert sum(s.completion_tokens for s in samples) == 42 and [s.completion_tokens for s in samples] == [7, 14, 21]
    assert plain.others == [] and plain.completion_tokens == 7


def test_500s_and_429s_are_retried_until_the_server_recovers(scripted_server):
    url, script = scripted_server([500, 429, 503])
    out = engine_for(url, max_concurrency=1).generate([req(0), req(1)])
    assert [c.finish_reason for c in out] == ["stop", "stop"] and out[0].text == "Rewritten: document 0"
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (11, 7)
    assert script.calls == 5


def test_a_timeout_is_retried(scripted_server):
    url, script = scripted_server(["sleep"])
    out = engine_for(url, timeout_seconds=0.5, max_concurrency=1).generate([req(0)])
    assert out[0].finish_reason == "stop" and script.calls == 2


def test_a_rejected_request_is_a_dropped_row_not_a_failure(scripted_server):
    url, _ = scripted_server([400])
    out = engine_for(url, max_concurrency=1).generate([req(0), req(1)])
    assert out[0].finish_reason == "error" and out[0].error.startswith("http_400") and "scripted 400" in out[0].error
    assert out[1].finish_reason == "stop"


def test_a_server_that_never_recovers_fails_with_a_clear_error(scripted_server):
    url, script = scripted_server([500] * 20)
    with pytest.raises(EndpointError, match="failed after 3 attempts: http_500"):
        engine_for(url, max_retries=2, max_concurrency=1).generate([req(0)])
    assert script.calls == 3


def test_an_unreachable_endpoint_fails_with_a_clear_error():
    eng = engine_for(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(EndpointError, match="ConnectError"):
        eng.generate([req(0)])


def test_the_api_key_is_sent_but_never_shown(scripted_server):
    url, _ = scripted_server([])
    eng = engine_for(url, api_key="sk-test-secret")
    assert eng._http().headers["Authorization"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in repr(eng.generate([req(0)]))


@pytest.fixture(scope="module")
def vllm_server(smollm2):
    """A real `vllm` OpenAI server on the default generator, SmolLM2-135M-Instruct."""
    tiny_model = smollm2
    pytest.importorskip("vllm", reason="needs the cpu (or gpu) extra: make test installs it")
    port = free_port()
    env = {
        **os.environ,
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{max((os.cpu_count() or 1) - 1, 0)}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        tiny_model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--enforce-eager",
        "--max-model-len",
        "1024",
        "--kv-cache-memory-bytes",
        str(1 << 30),
    ]
    log = open(os.path.join(tempfile.gettempdir(), f"vllm-server-{port}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"vllm server exited early: {open(log.name).read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("vllm server not ready within 240 s")
    yield f"http://127.0.0.1:{port}/v1", tiny_model
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()


def test_real_vllm_server_generates_and_rejects_a_too_long_prompt_as_a_row(vllm_server):
    url, model = vllm_server
    eng = OpenAIEndpointEngine(base_url=url, model=model, max_concurrency=4)
    long = ChatRequest("long", [{"role": "user", "content": "word " * 2000}], max_tokens=16)
    out = eng.generate([req(0), long, req(2)])
    assert out[0].finish_reason in ("stop", "length") and out[0].completion_tokens > 0 and out[0].prompt_tokens > 0
    assert out[1].finish_reason == "error" and out[1].error.startswith("http_400")
    assert out[2].finish_reason in ("stop", "length")
    assert eng.tokenizer().encode("hello world") == [28120, 905]  # the model dir's own tokenizer (SmolLM2's)
    question = ChatRequest(
        "q",
        [{"role": "user", "content": "In one sentence: why do rivers flow to the sea?"}],
        max_tokens=40,
        temperature=0.0,
    )
    (answer,) = eng.generate([question])
    assert (
        language_probabilities(answer.text).get("en", 0) > 0.8 and len(answer.text.split()) >= 5
    )  # real English words
    eng.close()


def test_a_broken_response_fails_as_itself_and_the_engine_works_inside_a_running_loop(scripted_server):
    import asyncio

    url, script = scripted_server([])
    eng = engine_for(url, max_concurrency=2)

    async def notebook_cell():  # generate() called where an event loop already runs (Jupyter)
        return eng.generate([req(0), req(1), req(2)])

    out = asyncio.run(notebook_cell())
    assert [c.text for c in out] == ["Rewritten: document 0", "Rewritten: document 1", "Rewritten: document 2"]
    assert script.calls == 3
    eng.close()
    eng.close()  # idempotent

    url, _ = scripted_server(["no_choices"])
    with pytest.raises(KeyError, match="choices"):  # the error itself, not "unhandled errors in a TaskGroup"
        engine_for(url, max_concurrency=1).generate([req(0), req(1)])
