"""Rephrasing one (shard x strategy) partition: plan, chunk, generate, post-filter, check, resume.

Inputs are ordered by seed id and cut into chunks of `chunk_docs` source documents. A chunk is
committed as one Parquet file whose schema metadata records the prompt hash, the generator and a
fingerprint of its inputs; a rerun skips every committed chunk whose three values still match.
"""

from __future__ import annotations

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
from dataset_assets.rephrase.postfilters import postfilter_flags
from dataset_assets.rephrase.steps import run_steps, sampling_json
from dataset_assets.rephrase.store import (
    ASSET,
    MANIFEST,
    REPHRASED_SCHEMA,
    SCORE_COLUMNS,
    apply_partition_checks,
    chunk_metadata,
    committed,
)
from dataset_assets.rephrase.strategies import Strategy, prompt_hash
from resources.llm import Completion


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
    generated_samples: int = 0  # best of n: samples generated at the last step, over every row
    try_drops: Counter = field(default_factory=Counter)  # drop reason -> samples that did not become rows
    rescued: int = 0  # kept rows made from a sample after the first


def generate_chunk(engine, strategy: Strategy, chunk: ChunkPlan, shard: str, generator: str) -> list[dict]:
    """Run every step of the strategy over the chunk's items; one row per item, post-filtered and checked.
    With best of n, the row is the first sample that passes every row check (else the first sample); the
    samples before it are tries, whose drop reasons the row keeps in `try_reasons`."""
    echo, verdicts = prompt_echo(strategy), {}

    def checked(it, sample: Completion) -> tuple:
        if id(sample) not in verdicts:  # each sample is checked once (retry rounds ask as they go)
            verdicts[id(sample)] = _checked(sample, it, strategy, echo)
        return verdicts[id(sample)]

    def accept(it, sample: Completion) -> bool:  # an engine error is not retried: it would fail again
        return sample.finish_reason == "error" or not checked(it, sample)[1]

    final, totals = run_steps(engine, strategy, chunk, accept=accept)
    rows = []
    phash, sampling = prompt_hash(strategy), sampling_json(strategy)
    for it in chunk.items:
        comp = final[it.item_id]
        tried = [checked(it, sample) for sample in (comp, *comp.others)]
        passed = next((k for k, (_, flags, _, _) in enumerate(tried) if not flags), None)
        chosen = passed or 0
        text, flags, scores, error = tried[chosen]
        # The samples rejected before the row's: before the kept one, or every other one of a dropped row.
        rejected = tried[:passed] if passed is not None else tried[1:]
        try_reasons = [first_reason(f) for _, f, _, _ in rejected]
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
                "finish_reason": (comp.others[chosen - 1] if chosen else comp).finish_reason,
                "kept": not flags,
                "drop_reason": first_reason(flags),
                "piece": it.piece,
                "audience": it.audience,
                "input_tokens": it.input_tokens,
                "chunk": chunk.index,
                "error": error,
                "flags": flags,
                "duplicate_of": None,
                "samples": len(tried),
                "try_reasons": try_reasons,
                **{k: getattr(scores, k) for k in SCORE_COLUMNS},
            }
        )
    return rows


def _checked(comp: Completion, it, strategy: Strategy, echo: PromptEcho) -> tuple[str, list[str], RowScores, str]:
    """(text, flags, scores, error) of one sample: post-filtered and put through every row check."""
    if comp.finish_reason == "error":
        return "", [(comp.error or "engine_error").split(":", 1)[0]], RowScores(), comp.error
    flags, text = postfilter_flags(
        comp.text, comp.finish_reason, comp.completion_tokens, it.input_tokens, strategy.postfilter
    )
    scores = safe_check_row(text, SourceView.of(it.text, it.lang), strategy.checks, echo, language_probabilities)
    return text, flags + scores.flags, scores, comp.error or scores.error


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
        sent = engine.requests_sent
        rows = generate_chunk(engine, strategy, chunk, shard, engine.generator)
        stats.requests += engine.requests_sent - sent  # retry rounds included
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
        "samples": stats.generated_samples,
        "try_drops": dict(stats.try_drops),
        "rescued": stats.rescued,
        "quality": stats.quality,
        "checks": stats.checks,
    }


def _count_tokens(stats: PartitionStats, table: pa.Table) -> None:
    stats.prompt_tokens += sum(v or 0 for v in table.column("prompt_tokens").to_pylist())
    stats.completion_tokens += sum(v or 0 for v in table.column("completion_tokens").to_pylist())


def _count_rows(stats: PartitionStats, rows: list[dict]) -> None:
    for row in rows:
        stats.rows += 1
        stats.generated_samples += row["samples"]
        stats.try_drops.update(row["try_reasons"])
        if row["kept"]:
            stats.kept += 1
            stats.rescued += bool(row["try_reasons"])
            stats.kept_completion_tokens += row["completion_tokens"] or 0
            if len(stats.samples) < 3:
                stats.samples.append(row["text"][:600])
        else:
            stats.drops[row["drop_reason"]] += 1
            if len(stats.dropped_samples.setdefault(row["drop_reason"], [])) < 2:
                stats.dropped_samples[row["drop_reason"]].append(row["text"][:300])
