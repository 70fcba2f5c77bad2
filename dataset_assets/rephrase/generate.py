"""Rephrasing one (shard x strategy) partition: plan, chunk, generate, post-filter, resume.

Inputs are ordered by seed id and cut into chunks of `chunk_docs` source documents. A chunk is
committed as one Parquet file whose schema metadata records the prompt hash, the generator and a
fingerprint of its inputs; a rerun skips every committed chunk whose three values still match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dataset_assets.crawl.langid import language_probabilities  # lid.176, loaded on first use
from dataset_assets.rephrase.postfilters import postfilter_flags, strip_preambles
from dataset_assets.quality.seeds import FINGERPRINT_COLUMNS, KEPT_FINGERPRINT, kept_fingerprint, table_kept_fingerprint
from dataset_assets.rephrase.strategies import Strategy, audience_for, fit_input, prompt_hash, render, routes
from dataset_assets.rephrase.checks import (
    PromptEcho, RowScores, SourceView, first_reason, judge, partition_measures, safe_check_row, template_duplicates,
)
from resources.llm import ChatRequest, Completion, EngineUnavailable

ASSET = "rephrased"
MANIFEST = "_manifest.json"

REPHRASED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source_id", pa.string()),
        ("shard", pa.string()),
        ("strategy", pa.string()),
        ("prompt_hash", pa.string()),
        ("generator", pa.string()),
        ("sampling", pa.string()),
        ("text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("kept", pa.bool_()),
        ("drop_reason", pa.string()),
        ("piece", pa.int32()),
        ("audience", pa.string()),
        ("input_tokens", pa.int32()),
        ("chunk", pa.int32()),
        ("error", pa.string()),
        # Synthetic-text checks (dataset_assets/text_checks.py): every check the row failed, the row a
        # template duplicate was folded into, and what the row checks measured.
        ("flags", pa.list_(pa.string())),
        ("duplicate_of", pa.string()),
        ("repeated_ngram_share", pa.float32()),
        ("compression_ratio", pa.float32()),
        ("copied_share", pa.float32()),
        ("numbers", pa.int32()),
        ("unsupported_numbers", pa.int32()),
        ("source_word_share", pa.float32()),
        ("language_score", pa.float32()),
    ]
)
SCORE_COLUMNS = ("repeated_ngram_share", "compression_ratio", "copied_share", "numbers", "unsupported_numbers",
                 "source_word_share", "language_score")


@dataclass(frozen=True)
class WorkItem:
    item_id: str  # the rephrased row id: stable for (source, strategy, piece)
    source_id: str
    piece: int
    text: str
    input_tokens: int
    audience: Optional[str]
    lang: Optional[str] = None  # the source document's language: the output must be in it


@dataclass
class ChunkPlan:
    index: int
    items: list[WorkItem]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for it in self.items:
            h.update(f"{it.item_id}\x00{hashlib.sha256(it.text.encode()).hexdigest()}\x00{it.audience}\n".encode())
        return h.hexdigest()[:16]

    @property
    def file_name(self) -> str:
        return f"part-{self.index:05d}.parquet"


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
    quality: dict = field(default_factory=dict)  # text_checks.partition_measures of the partition
    checks: dict = field(default_factory=dict)  # text_checks.judge: severity of each partition check


def with_output_cap(strategy: Strategy, max_output_tokens: Optional[int]) -> Strategy:
    """The strategy with its output limit lowered to `max_output_tokens` (demos on CPU); the prompt
    hash changes with it, so capped and uncapped partitions are never mistaken for each other."""
    if not max_output_tokens or max_output_tokens >= strategy.sampling.max_tokens:
        return strategy
    return dataclasses.replace(strategy, sampling=dataclasses.replace(strategy.sampling, max_tokens=max_output_tokens))


def row_id(source_id: str, strategy: str, piece: int) -> str:
    return hashlib.blake2b(f"{source_id}\x00{strategy}\x00{piece}".encode(), digest_size=8).hexdigest()


# Chat markers of common model families, neutralised in crawl text even when the generator's own
# tokenizer does not know them, so a page cannot open a fake turn in whatever model reads it later.
CHAT_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>",
                "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>", "[INST]", "[/INST]")


def special_tokens(tokenizer) -> set[str]:
    found = set(CHAT_MARKERS)
    found.update(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or getattr(tokenizer, "get_added_tokens_decoder", lambda: {})()
    found.update(str(getattr(t, "content", t)) for t in (added.values() if isinstance(added, dict) else []))
    return {t for t in found if len(t) > 1}


def neutralise_control_tokens(text: str, specials: set[str]) -> str:
    """Break every special-token string in crawl text with a zero-width space after its first
    character: the text reads the same, but the tokenizer no longer turns it into a control token."""
    for token in sorted(specials, key=len, reverse=True):
        if token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text


def count_tokens(tokenizer, text: str) -> int:
    try:  # Hugging Face tokenizers would add BOS and friends by default
        return len(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:
        return len(tokenizer.encode(text))


def plan_items(seeds: list[dict], strategy: Strategy, tokenizer) -> list[WorkItem]:
    """Kept seeds routed to this strategy, in id order, cut to the strategy's input limit."""
    items: list[WorkItem] = []
    specials = special_tokens(tokenizer)
    for seed in sorted(seeds, key=lambda s: s["id"]):
        if not seed.get("kept") or not routes(strategy, seed.get("quality_percentile")):
            continue
        text = neutralise_control_tokens(seed["text"], specials)
        pieces = fit_input(text, tokenizer, strategy.input.max_tokens, strategy.input.overflow)
        audience = audience_for(strategy, seed["id"])
        for i, piece in enumerate(pieces):
            items.append(WorkItem(
                row_id(seed["id"], strategy.name, i), seed["id"], i, piece, count_tokens(tokenizer, piece), audience, seed.get("lang"),
            ))
    return items


def chunk_plans(items: list[WorkItem], chunk_docs: int) -> list[ChunkPlan]:
    """`chunk_docs` source documents per chunk (every piece of a document in the same chunk)."""
    if chunk_docs < 1:
        raise ValueError(f"chunk_docs must be at least 1, got {chunk_docs}")
    chunks: list[ChunkPlan] = []
    sources: list[str] = []
    for item in items:
        if not sources or item.source_id != sources[-1]:
            sources.append(item.source_id)
            if (len(sources) - 1) % chunk_docs == 0:
                chunks.append(ChunkPlan(len(chunks), []))
        chunks[-1].items.append(item)
    return chunks


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
                out.append(Completion(req.request_id, "", 0, 0, "error", f"engine_error: {type(exc).__name__}: {exc}"[:500]))
        if len(requests) > 1 and failures == len(requests):
            raise EngineUnavailable(f"every request of the batch failed alone too: {batch_error}") from batch_error
        return out


def generate_chunk(engine, strategy: Strategy, chunk: ChunkPlan, shard: str, generator: str) -> list[dict]:
    """Run every step of the strategy over the chunk's items; one row per item."""
    values = {it.item_id: {"document": it.text, **({"audience": it.audience} if it.audience else {})} for it in chunk.items}
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
        completions = _generate_isolated(engine, requests)
        survivors = []
        for it, comp in zip(alive, completions):
            totals[it.item_id][0] += comp.prompt_tokens
            totals[it.item_id][1] += comp.completion_tokens
            final[it.item_id] = comp
            if comp.finish_reason != "error":
                # The next step reads the answer, not a "Sure, here is the outline:" line.
                values[it.item_id]["previous"] = strip_preambles(comp.text)
                survivors.append(it)
        alive = survivors
    rows = []
    phash, sampling = prompt_hash(strategy), sampling_json(strategy)
    echo = prompt_echo(strategy)
    for it in chunk.items:
        comp = final[it.item_id]
        scores, error = RowScores(), comp.error
        if comp.finish_reason == "error":
            flags, text = [(comp.error or "engine_error").split(":", 1)[0]], ""
        else:
            flags, text = postfilter_flags(comp.text, comp.finish_reason, comp.completion_tokens, it.input_tokens, strategy.postfilter)
            scores = safe_check_row(text, SourceView.of(it.text, it.lang), strategy.checks, echo, language_probabilities)
            flags += scores.flags
            error = error or scores.error
        reason = first_reason(flags)
        kept = not flags
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
                "kept": kept,
                "drop_reason": reason,
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
    return PromptEcho.from_messages([m.content for step in strategy.steps for m in step.messages], strategy.checks.echo_labels)


def chunk_metadata(strategy: Strategy, generator: str, chunk: ChunkPlan) -> dict[str, str]:
    return {"prompt_hash": prompt_hash(strategy), "generator": generator, "fingerprint": chunk.fingerprint}


def committed(lake, directory: str, chunk: ChunkPlan, expected: dict[str, str]) -> Optional[pa.Table]:
    """The committed chunk file if it exists and was made from the same prompt, generator and inputs."""
    path = f"{directory}/{chunk.file_name}"
    try:
        schema = pq.read_schema(path, filesystem=lake.fs)
    except (FileNotFoundError, OSError):
        return None
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    if any(meta.get(k) != v for k, v in expected.items()):
        return None
    return pq.read_table(path, filesystem=lake.fs)


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
    tables: list[tuple[ChunkPlan, pa.Table, dict[str, str]]] = []
    for chunk in chunks:
        expected = chunk_metadata(strategy, generator, chunk)
        table = committed(lake, directory, chunk, expected)
        if table is None:
            rows = generate_chunk(engine, strategy, chunk, shard, generator)
            stats.requests += len(chunk.items) * len(strategy.steps)
            table = pa.Table.from_pylist(rows, schema=REPHRASED_SCHEMA)
            lake.write_parquet(f"{directory}/{chunk.file_name}", table.to_batches(), REPHRASED_SCHEMA, expected)
            stats.chunks_generated += 1
        else:
            stats.chunks_reused += 1
        tables.append((chunk, table, expected))
        stats.rows_done += table.num_rows
        _count_tokens(stats, table)
        if on_chunk:
            on_chunk(stats, chunk.index + 1, len(chunks))
    if not chunks:  # no kept seeds: an empty part file, so readers see a finished, empty partition
        empty = ChunkPlan(0, [])
        lake.write_parquet(f"{directory}/{empty.file_name}", [], REPHRASED_SCHEMA, chunk_metadata(strategy, generator, empty))
        chunks = [empty]
    all_rows = apply_partition_checks(lake, directory, tables, strategy)
    _count_rows(stats, all_rows)
    stats.quality = partition_measures(all_rows)
    stats.checks = judge(stats.quality, strategy.checks)
    wanted = {c.file_name for c in chunks}
    for path in lake.partition_files(ASSET, partition):
        if path.rsplit("/", 1)[-1] not in wanted:
            lake.fs.delete_file(path)  # chunks of an earlier, longer plan
    lake.put_json(
        manifest_parts,
        {
            "prompt_hash": prompt_hash(strategy),
            "generator": generator,
            "seeds_fingerprint": kept_fingerprint(seeds),
            "chunks": len(chunks),
            "rows": stats.rows,
            "kept": stats.kept,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "kept_completion_tokens": stats.kept_completion_tokens,
            "drops": dict(stats.drops),
            "quality": stats.quality,
            "checks": stats.checks,
        },
    )
    return stats


ROW_COLUMNS = ["id", "source_id", "text", "kept", "drop_reason", "flags", "duplicate_of", "completion_tokens", *SCORE_COLUMNS]


def apply_partition_checks(lake, directory: str, tables: list[tuple[ChunkPlan, pa.Table, dict]], strategy: Strategy) -> list[dict]:
    """Mark template duplicates across every chunk of the partition and rewrite the chunks whose rows
    changed (same footer, so they stay reusable); returns the partition's rows with final verdicts.
    Idempotent: verdicts of an earlier pass are recomputed from the row checks, never stacked."""
    rows_by_chunk = [(chunk, table, expected, table.select(ROW_COLUMNS).to_pylist()) for chunk, table, expected in tables]
    candidates = [
        (r["id"], r["source_id"], r["text"])
        for _, _, _, rows in rows_by_chunk
        for r in rows
        if not [f for f in (r["flags"] or []) if f != "template_duplicate"]
    ]
    duplicate_of = template_duplicates(candidates, strategy.checks)
    out = []
    for chunk, table, expected, rows in rows_by_chunk:
        changed = False
        for r in rows:
            flags = [f for f in (r["flags"] or []) if f != "template_duplicate"]
            if r["id"] in duplicate_of:
                flags.append("template_duplicate")
            verdict = (not flags, first_reason(flags), duplicate_of.get(r["id"]))
            if verdict != (r["kept"], r["drop_reason"], r["duplicate_of"]) or flags != (r["flags"] or []):
                changed = True
            r["flags"], (r["kept"], r["drop_reason"], r["duplicate_of"]) = flags, verdict
        if changed:
            full = table.to_pylist()
            for row, r in zip(full, rows):
                row.update(flags=r["flags"], kept=r["kept"], drop_reason=r["drop_reason"], duplicate_of=r["duplicate_of"])
            fixed = pa.Table.from_pylist(full, schema=REPHRASED_SCHEMA)
            lake.write_parquet(f"{directory}/{chunk.file_name}", fixed.to_batches(), REPHRASED_SCHEMA, expected)
        out.extend(rows)
    return out


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


def partition_status(lake, strategies: dict[str, Strategy], shards: list[str], generator: str) -> dict[tuple[str, str], str]:
    """`missing`, or `outdated` (the prompt, the generator or the shard's kept seeds changed since it
    was made: an edited prompt file, another model, a retrained classifier), or `current`."""
    return {pair: state for pair, (state, _) in partition_reasons(lake, strategies, shards, generator).items()}


def partition_reasons(
    lake, strategies: dict[str, Strategy], shards: list[str], generator: str
) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """(state, why) per (shard, strategy): why an outdated partition is outdated (`prompt edited`,
    `new generator`, `seeds changed`, any of them)."""
    done = {(shard, name): manifest for shard, name, manifest in finished_partitions(lake)}
    status = {}
    for shard in shards:
        seeds_now = seeds_fingerprint(lake, shard) if any((shard, name) in done for name in strategies) else None
        for name, strategy in strategies.items():
            manifest = done.get((shard, name))
            if manifest is None:
                status[(shard, name)] = ("missing", [])
                continue
            why = []
            if manifest.get("prompt_hash") != prompt_hash(strategy):
                why.append("prompt edited")
            if manifest.get("generator") != generator:
                why.append("new generator")
            if seeds_now is not None and manifest.get("seeds_fingerprint") != seeds_now:
                why.append("seeds changed")
            status[(shard, name)] = ("outdated" if why else "current", why)
    return status


def seeds_fingerprint(lake, shard: str) -> Optional[str]:
    """The kept-set fingerprint of a shard's seeds partition: from its Parquet footer (one small read)
    or, for files written before the footer held it, from the rows. None if there are no seeds."""
    files = lake.partition_files("seeds", {"shard": shard})
    if not files:
        return None
    if len(files) == 1:
        value = (pq.read_schema(files[0], filesystem=lake.fs).metadata or {}).get(KEPT_FINGERPRINT.encode())
        if value is not None:
            return value.decode()
    return table_kept_fingerprint(lake.read_partition("seeds", {"shard": shard}, columns=FINGERPRINT_COLUMNS))


def finished_partitions(lake) -> Iterator[tuple[str, str, dict]]:
    """(shard, strategy, manifest) of every rephrased partition whose last run completed."""
    for shard_dir in _subdirs(lake, lake.path(ASSET), "shard="):
        for strategy_dir in _subdirs(lake, lake.path(ASSET, shard_dir), "strategy="):
            parts = [ASSET, shard_dir, strategy_dir, MANIFEST]
            if lake.exists(parts):
                yield shard_dir[len("shard=") :], strategy_dir[len("strategy=") :], lake.get_json(parts)


def _subdirs(lake, path: str, prefix: str) -> list[str]:
    infos = lake.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix))
