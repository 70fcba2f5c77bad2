"""What one (shard x strategy) partition asks of the engine: work items (a seed, or one piece of a long
seed, with its audience) cut into chunks of `chunk_docs` source documents, each with a fingerprint
of its inputs."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Optional

from dataset_assets.rephrase.strategies import Strategy, audience_for, fit_input, routes


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
CHAT_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
)


def special_tokens(tokenizer) -> set[str]:
    found = set(CHAT_MARKERS)
    found.update(getattr(tokenizer, "all_special_tokens", []) or [])
    added = (
        getattr(tokenizer, "added_tokens_decoder", None) or getattr(tokenizer, "get_added_tokens_decoder", lambda: {})()
    )
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
            items.append(
                WorkItem(
                    row_id(seed["id"], strategy.name, i),
                    seed["id"],
                    i,
                    piece,
                    count_tokens(tokenizer, piece),
                    audience,
                    seed.get("lang"),
                )
            )
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
