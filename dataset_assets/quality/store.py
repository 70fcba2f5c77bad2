"""Where the quality model lives in the lake, and how it is read back: the stored fastText model or
the Hugging Face model its calibration names; the crawl sample it is trained and calibrated on."""

from __future__ import annotations

import os
import random

from dataset_assets.quality import classifier
from dataset_assets.quality.embedding import EMBEDDING, EmbeddingSignal
from dataset_assets.quality.hf_classifier import HFClassifier, HFScorerSpec
from dataset_assets.quality.reference_lm import ReferenceLM
from dataset_assets.quality.signals import REFERENCE_LM, CombinedScore, from_json, signal_names
from resources.lake import Lake, open_filesystem

ASSET = "quality_classifier"
MODEL = [ASSET, "model.bin"]
CALIBRATION = [ASSET, "calibration.json"]
REFERENCE_LM_FILE = [ASSET, "reference_lm.npz"]
EMBEDDING_MODEL = (
    "embedding_model"  # the signals entry's key of the trained embedding signal (its encoder and regression)
)


class QualityModelMissing(FileNotFoundError):
    """The lake has no quality model yet: quality_classifier has not been materialised."""


def sample_crawl_docs(lake: Lake, limit: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(texts, crawls, shards) of at most `limit` crawl documents, sampled with `seed` (the same
    documents whatever columns are read: the sample is drawn over positions)."""
    texts: list[str] = []
    crawls: list[str] = []
    shards: list[str] = []
    for shard in lake.partition_values("crawl_docs", "shard"):
        table = lake.read_partition("crawl_docs", {"shard": shard}, columns=["text", "crawl"])
        texts.extend(table.column("text").to_pylist())
        crawls.extend(table.column("crawl").to_pylist())
        shards.extend([shard] * table.num_rows)
    if len(texts) > limit:
        picked = random.Random(seed).sample(range(len(texts)), limit)
        texts, crawls, shards = ([column[i] for i in picked] for column in (texts, crawls, shards))
    return texts, crawls, shards


def fetch_model(path: str, local_file: str) -> str:
    fs, inner = open_filesystem(path)
    with fs.open_input_stream(inner) as src, open(local_file, "wb") as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)
    return local_file


def load_quality_model(lake: Lake, local_dir: str):
    """The lake's model and calibration, ready to score: the stored fastText model, or the Hugging
    Face model the calibration names."""
    if not lake.exists(CALIBRATION):
        raise QualityModelMissing(f"no quality model at {lake.uri(*CALIBRATION)}: materialise quality_classifier first")
    calibration = lake.get_json(CALIBRATION)
    if calibration.get("kind") == "huggingface":
        spec = calibration["huggingface"]
        return HFClassifier(HFScorerSpec(**{**spec, "score_range": tuple(spec["score_range"])})), calibration
    if not lake.exists(MODEL):
        raise QualityModelMissing(f"no quality model at {lake.uri(*MODEL)}: materialise quality_classifier first")
    return classifier.load(lake.download(MODEL, os.path.join(local_dir, "model.bin"))), calibration


def load_combined(lake: Lake, calibration: dict, local_dir: str) -> CombinedScore | None:
    """The further signals and the combined calibration, when the classifier stored them (a
    calibration from before them, or one written with every further signal off, has none)."""
    signals = calibration.get("signals")
    if not signals:
        return None
    lm = None
    if REFERENCE_LM in signal_names(signals):
        if not lake.exists(REFERENCE_LM_FILE):
            raise QualityModelMissing(
                f"no reference LM at {lake.uri(*REFERENCE_LM_FILE)}: materialise quality_classifier again"
            )
        lm = ReferenceLM.load(lake.download(REFERENCE_LM_FILE, os.path.join(local_dir, "reference_lm.npz")))
    embedding = EmbeddingSignal.from_json(signals[EMBEDDING_MODEL]) if EMBEDDING in signal_names(signals) else None
    return from_json(lm, signals, embedding)
