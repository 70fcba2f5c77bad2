"""Rephrasing one (shard x strategy) partition: plan, chunk, generate, post-filter, check, resume.

Inputs are ordered by seed id and cut into chunks of `chunk_docs` source documents. A chunk is
committed as one Parquet file whose schema metadata records the prompt hash, the generator and a
fingerprint of its inputs; a rerun skips every committed chunk whose three values still match.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa

from dataset_assets.crawl.langid import language_probabilities  # lid.176, loaded on first use
from dataset_assets.quality.seeds import kept_fingerprint
from dataset_assets.rephrase.checks import RowScores, SourceView, first_reason, safe_check_row
from dataset_assets.rephrase.chunks import ChunkPlan, chunk_plans, plan_items
from dataset_assets.rephrase.echo import PromptEcho
from dataset_assets.rephrase.partition_checks import judge, partition_measures
from dataset_assets.rephrase.postfilters import postfilter_flags, strip_preambles
from dataset_assets.rephrase.store import (
    ASSET,
    MANIFEST,
    REPHRASED_SCHEMA,
    SCORE_COLUMNS,
    apply_partition_checks,
    chunk_metadata,
    committed,
)
from dataset_assets.rephrase.strategies import Strategy, prompt_hash, render
from resources.llm import ChatRequest, Completion, EngineUnavailable


@dataclass
class PartitionStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rows: int = 0
    kept: int = 0
    drops: Counter = field(default_factory=Counter)
    chunks_generated: int = 0
    chunks_reused: int = 0
    requests: int = 0
    samples: list[str] = field(default_factory=list)
    rows_done: int = 0  # rows written or reused so far (progress; `rows` is set after the partition check)
    kept_completion_tokens: int = 0
    dropped_samples: dict = field(default_factory=dict)  # drop reason -> up to two dropped texts
    quality: dict = field(default_factory=dict)  # partition_checks.partition_measures of the partition
    checks: dict = field(default_factory=dict)  # partition_checks.judge: severity of each partition check
    manifest: dict = field(default_factory=dict)  # the finished partition's _manifest.json, once written


def sampling_json(strategy: Strategy) -> str:
    s = strategy.sampling
    values = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
    if s.repetition_penalty != 1.0:
        values["repetition_penalty"] = s.repetition_penalty
    if s.frequency_penalty:
        values["frequency_penalty"] = s.frequency_penalty
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
            )
            for it in alive
        ]
        survivors = []
        for it, comp in zip(alive, _generate_isolated(engine, requests)):
            totals[it.item_id][0] += comp.prompt_tokens
            totals[it.item_id][1] += comp.completion_tokens
            final[it.item_id] = comp
            if comp.finish_reason != "error":
                # The next step reads the answer, not a "Sure, here is the outline:" line.
                values[it.item_id]["previous"] = strip_preambles(comp.text)
                survivors.append(it)
        alive = survivors
    return final, totals


def generate_chunk(engine, strategy: Strategy, chunk: ChunkPlan, shard: str, generator: str) -> list[dict]:
    """Run every step of the strategy over the chunk's items; one row per item, post-filtered and checked."""
    final, totals = run_steps(engine, strategy, chunk)
    rows = []
    phash, sampling = prompt_hash(strategy), sampling_json(strategy)
    echo = prompt_echo(strategy)
    for it in chunk.items:
        comp = final[it.item_id]
        scores, error = RowScores(), comp.error
        if comp.finish_reason == "error":
            flags, text = [(comp.error or "engine_error").split(":", 1)[0]], ""
        else:
            flags, text = postfilter_flags(
                comp.text, comp.finish_reason, comp.completion_tokens, it.input_tokens, strategy.postfilter
            )
            scores = safe_check_row(
                text, SourceView.of(it.text, it.lang), strategy.checks, echo, language_probabilities
            )
            flags += scores.flags
            error = error or scores.error
        rows.append(
            {
                "id": it.item_id,
                "source_id": it.source_id,
                "shard": shard,
                "strategy": strategy.name,
                "prompt_hash": phash,
                "generator": generator,
                "sampling": sampling,
                "text": text,
                "prompt_tokens": totals[it.item_id][0],
                "completion_tokens": totals[it.item_id][1],
                "finish_reason": comp.finish_reason,
                "kept": not flags,
                "drop_reason": first_reason(flags),
                "piece": it.piece,
                "audience": it.audience,
                "input_tokens": it.input_tokens,
                "chunk": chunk.index,
                "error": error,
                "flags": flags,
                "duplicate_of": None,
                **{k: getattr(scores, k) for k in SCORE_COLUMNS},
            }
        )
    return rows


def prompt_echo(strategy: Strategy) -> PromptEcho:
    return PromptEcho.from_messages(
        [m.content for step in strategy.steps for m in step.messages], strategy.checks.echo_labels
    )


def rephrase_partition(
    lake,
    engine,
    strategy: Strategy,
    shard: str,
    seeds: list[dict],
    chunk_docs: int,
    on_chunk: Optional[Callable[[PartitionStats, int, int], None]] = None,
) -> PartitionStats:
    """Make `rephrased/shard=<shard>/strategy=<name>/` hold exactly one row per planned item."""
    partition = {"shard": shard, "strategy": strategy.name}
    directory = lake.partition_path(ASSET, partition)
    generator = engine.generator
    items = plan_items(seeds, strategy, engine.tokenizer())
    chunks = chunk_plans(items, chunk_docs)
    stats = PartitionStats()
    manifest_parts = [ASSET, *lake.partition_parts(ASSET, partition)[1:], MANIFEST]
    if lake.exists(manifest_parts):
        # The partition is about to change: it is not finished again until the new manifest lands.
        lake.fs.delete_file(lake.path(*manifest_parts))
    tables = [
        _chunk_table(lake, engine, strategy, shard, directory, chunk, stats, on_chunk, len(chunks)) for chunk in chunks
    ]
    if not chunks:  # no kept seeds: an empty part file, so readers see a finished, empty partition
        empty = ChunkPlan(0, [])
        lake.write_parquet(
            f"{directory}/{empty.file_name}", [], REPHRASED_SCHEMA, chunk_metadata(strategy, generator, empty)
        )
        chunks = [empty]
    all_rows = apply_partition_checks(lake, directory, tables, strategy)
    _count_rows(stats, all_rows)
    stats.quality = partition_measures(all_rows)
    stats.checks = judge(stats.quality, strategy.checks)
    wanted = {c.file_name for c in chunks}
    for path in lake.partition_files(ASSET, partition):
        if path.rsplit("/", 1)[-1] not in wanted:
            lake.fs.delete_file(path)  # chunks of an earlier, longer plan
    manifest = _manifest(strategy, generator, seeds, len(chunks), stats)
    lake.put_json(manifest_parts, manifest)  # the partition is finished; its caller records it in the catalog
    stats.manifest = manifest
    return stats


def _chunk_table(
    lake,
    engine,
    strategy: Strategy,
    shard: str,
    directory: str,
    chunk: ChunkPlan,
    stats: PartitionStats,
    on_chunk,
    count: int,
):
    """(chunk, its table, its footer metadata): the committed file when it still matches, else generated and
    committed."""
    expected = chunk_metadata(strategy, engine.generator, chunk)
    table = committed(lake, directory, chunk, expected)
    if table is None:
        rows = generate_chunk(engine, strategy, chunk, shard, engine.generator)
        stats.requests += len(chunk.items) * len(strategy.steps)
        table = pa.Table.from_pylist(rows, schema=REPHRASED_SCHEMA)
        lake.write_parquet(f"{directory}/{chunk.file_name}", table.to_batches(), REPHRASED_SCHEMA, expected)
        stats.chunks_generated += 1
    else:
        stats.chunks_reused += 1
    stats.rows_done += table.num_rows
    _count_tokens(stats, table)
    if on_chunk:
        on_chunk(stats, chunk.index + 1, count)
    return chunk, table, expected


def _manifest(strategy: Strategy, generator: str, seeds: list[dict], chunks: int, stats: PartitionStats) -> dict:
    return {
        "prompt_hash": prompt_hash(strategy),
        "generator": generator,
        "seeds_fingerprint": kept_fingerprint(seeds),
        "chunks": chunks,
        "rows": stats.rows,
        "kept": stats.kept,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "kept_completion_tokens": stats.kept_completion_tokens,
        "drops": dict(stats.drops),
        "quality": stats.quality,
        "checks": stats.checks,
    }


def _count_tokens(stats: PartitionStats, table: pa.Table) -> None:
    stats.prompt_tokens += sum(v or 0 for v in table.column("prompt_tokens").to_pylist())
    stats.completion_tokens += sum(v or 0 for v in table.column("completion_tokens").to_pylist())


def _count_rows(stats: PartitionStats, rows: list[dict]) -> None:
    for row in rows:
        stats.rows += 1
        if row["kept"]:
            stats.kept += 1
            stats.kept_completion_tokens += row["completion_tokens"] or 0
            if len(stats.samples) < 3:
                stats.samples.append(row["text"][:600])
        else:
            stats.drops[row["drop_reason"]] += 1
            if len(stats.dropped_samples.setdefault(row["drop_reason"], [])) < 2:
                stats.dropped_samples[row["drop_reason"]].append(row["text"][:300])
