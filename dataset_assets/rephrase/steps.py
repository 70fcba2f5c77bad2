"""A strategy's steps through an engine: one batch per step over a chunk's items, a failing request
isolated to its own row, and best of n (the strategy's `sampling.n` samples per item) at the last step,
the one whose text becomes the row."""

from __future__ import annotations

import json

from dataset_assets.rephrase.chunks import ChunkPlan
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
        values["n"] = s.n
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


def run_steps(engine, strategy: Strategy, chunk: ChunkPlan) -> tuple[dict[str, Completion], dict[str, list[int]]]:
    """Every step of the strategy over the chunk's items: (the last completion of each item, its
    [prompt, completion] tokens over all steps). An item whose step failed takes no further step."""
    values = {
        it.item_id: {"document": it.text, **({"audience": it.audience} if it.audience else {})} for it in chunk.items
    }
    totals = {it.item_id: [0, 0] for it in chunk.items}
    final: dict[str, Completion] = {}
    alive = list(chunk.items)
    s = strategy.sampling
    last = len(strategy.steps) - 1
    for step_no, step in enumerate(strategy.steps):
        requests = [
            ChatRequest(
                f"{it.item_id}:{step_no}",
                render(step.messages, values[it.item_id]),
                s.max_tokens,
                s.temperature,
                s.top_p,
                s.repetition_penalty,
                s.frequency_penalty,
                s.n if step_no == last else 1,  # best of n: the text the row is made of
            )
            for it in alive
        ]
        survivors = []
        for it, comp in zip(alive, _generate_isolated(engine, requests)):
            for sample in (comp, *comp.others):  # every generated token is paid for
                totals[it.item_id][0] += sample.prompt_tokens
                totals[it.item_id][1] += sample.completion_tokens
            final[it.item_id] = comp
            if comp.finish_reason != "error":
                # The next step reads the answer, not a "Sure, here is the outline:" line.
                values[it.item_id]["previous"] = strip_preambles(comp.text)
                survivors.append(it)
        alive = survivors
    return final, totals
