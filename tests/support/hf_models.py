"""Small random BERT-shaped models written locally (GPT-2's tokenizer from ../shared), saved the way
any Hugging Face model is, and a two-shard lake of real English to calibrate them on. They test
loading, batching and calibration, never judgments."""

from __future__ import annotations

from typing import Optional

import pyarrow as pa

from dataset_assets.crawl.documents import DOCUMENT_SCHEMA
from resources.lake import Lake
from tests.conftest import SHARED, distinct_english


def write_bert(directory, num_labels: Optional[int]) -> str:
    """A 1-layer BERT: a sequence classifier with `num_labels` outputs (1: regression), or with
    None a bare encoder (the sentence-encoder shape), random weights."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(SHARED / "tokenizers" / "gpt2-tokenizer.json"),
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=128,
    )
    labels = {0: "low", 1: "high"} if num_labels == 2 else {0: "LABEL_0"}
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels or 1,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertModel(config) if num_labels is None else BertForSequenceClassification(config)
    model.eval().save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return str(directory)


def two_shard_lake(root) -> Lake:
    """crawl_docs of shards `sa` and `sb`, 40 WikiText paragraphs each, one crawl (CC-TEST)."""
    lake = Lake(root=str(root))
    for shard in ("sa", "sb"):
        rows = []
        for i in range(40):
            text = distinct_english(i + (0 if shard == "sa" else 40))
            row = {name: None for name in DOCUMENT_SCHEMA.names}
            row.update(
                id=f"{shard}-{i}",
                text=text,
                url=f"http://x/{shard}/{i}",
                shard=shard,
                crawl="CC-TEST",
                lang="en",
                lang_score=0.99,
                content_hash=str(i),
                chars=len(text),
                capped=False,
            )
            rows.append(row)
        lake.write_partition(
            "crawl_docs",
            {"shard": shard},
            pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA).to_batches(),
            DOCUMENT_SCHEMA,
        )
    return lake
