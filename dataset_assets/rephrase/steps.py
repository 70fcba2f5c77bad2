"""A strategy's steps through an engine: one batch per step over a chunk's items, a failing request
isolated to its own row, and best of n (the strategy's `sampling.n` samples per item) at the last step,
the one whose text becomes the row."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Optional

from dataset_assets.rephrase.chunks import ChunkPlan, WorkItem
from dataset_assets.rephrase.postfilters import strip_preambles
from dataset_assets.rephrase.strategies import Strategy, render
from resources.llm import ChatRequest, Completion, EngineUnavailable


def sampling_json(strategy: Strategy) -> str:
    s = strategy.sampling
    values = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
    if s.repetition_penalty != 1.0:
        values["repetition_penalty"] = s.repetition_penalty
    if s.frequency_penalty:
        values["frequency_penalty"] = s.frequency_penalty
    if s.n > 1:
        values["n"], values["n_mode"] = s.n, s.n_mode
    return json.dumps(values, sort_keys=True)


def _generate_isolated(engine, requests: list[ChatRequest]) -> list[Completion]:
    """One batch; if the engine fails it as a whole, each request alone, so one bad request is one
    dropped row. A dead engine or endpoint fails the partition instead: nothing is wrong with the
    rows, and a rerun resumes from the committed chunks. So does a batch where every request fails
    alone, which says the same about the engine."""
    try:
        return engine.generate(requests)
    except EngineUnavailable:
        raise
    except Exception as batch_error:
        out, failures = [], 0
        for req in requests:
            try:
                out.extend(engine.generate([req]))
            except EngineUnavailable:
                raise
            except Exception as exc:
                failures += 1
                out.append(
                    Completion(req.request_id, "", 0, 0, "error", f"engine_error: {type(exc).__name__}: {exc}"[:500])
                )
        if len(requests) > 1 and failures == len(requests):
            raise EngineUnavailable(f"every request of the batch failed alone too: {batch_error}") from batch_error
        return out


def run_steps(
    engine, strategy: Strategy, chunk: ChunkPlan, accept: Optional[Callable[[WorkItem, Completion], bool]] = None
) -> tuple[dict[str, Completion], dict[str, list[int]]]:
    """Every step of the strategy over the chunk's items: (the last step's completion of each item, with
    its other samples as `others`; its [prompt, completion] tokens over all steps and samples). An item
    whose step failed takes no further step. Best of n at the last step: `parallel` asks for n samples
    at once; `retry` (given `accept`) runs rounds of one sample, the next round only for the items none
    of whose samples `accept` took (the row's generate_chunk takes a sample that passes every row check,
    or an engine error, which would only fail again), at most n rounds."""
    values = {
        it.item_id: {"document": it.text, **({"audience": it.audience} if it.audience else {})} for it in chunk.items
    }
    totals = {it.item_id: [0, 0] for it in chunk.items}
    final: dict[str, Completion] = {}
    alive = list(chunk.items)
    s = strategy.sampling
    for step_no, step in enumerate(strategy.steps):
        last = step_no == len(strategy.steps) - 1
        retry = last and s.n > 1 and s.n_mode == "retry" and accept is not None
        samples: dict[str, list[Completion]] = {it.item_id: [] for it in alive}
        pending = alive
        for round_no in range(s.n if retry else 1):
            requests = [
                ChatRequest(
                    f"{it.item_id}:{step_no}" + (f"#{round_no + 1}" if retry else ""),
                    render(step.messages, values[it.item_id]),
                    s.max_tokens,
                    s.temperature,
                    s.top_p,
                    s.repetition_penalty,
                    s.frequency_penalty,
                    s.n if last and not retry else 1,  # best of n: the text the row is made of
                )
                for it in pending
            ]
            answers = _generate_isolated(engine, requests)
            for it, comp in zip(pending, answers):
                for sample in (comp, *comp.others):  # every generated token is paid for
                    totals[it.item_id][0] += sample.prompt_tokens
                    totals[it.item_id][1] += sample.completion_tokens
                    samples[it.item_id].append(sample)
            pending = [it for it, comp in zip(pending, answers) if retry and not accept(it, comp)]
            if not pending:
                break
        survivors = []
        for it in alive:
            first, *others = samples[it.item_id]
            first.others = others
            final[it.item_id] = first
            if first.finish_reason != "error":
                # The next step reads the answer, not a "Sure, here is the outline:" line.
                values[it.item_id]["previous"] = strip_preambles(first.text)
                survivors.append(it)
        alive = survivors
    return final, totals
