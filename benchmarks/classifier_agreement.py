"""Agreement of the seed quality scores with human judgment: ROC-AUC on the development set of judged
pages in benchmarks/quality_devset.json (how it was made is in the file), for each signal the seeds
carry (`quality_score`: the classifier's P(hq); `lm_score`: the reference LM; `length_score`: words, up
to 2,000; `embedding_score`: the opt-in sentence-encoder signal) and for the combined percentile
the keep rule uses (`quality_percentile`).

    python benchmarks/classifier_agreement.py [--lake data/lake] [--result classifier_agreement]

Run after `make demo` (or any run of crawl_docs, quality_classifier and seeds over the sample shards
in ../shared/data/crawl): the page ids are crawl_docs ids of those shards. Not the held-out
judgments the issue mentions: those are kept elsewhere on purpose.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="data/lake")
    parser.add_argument(
        "--result",
        default="classifier_agreement",
        help="name of the results file (e.g. classifier_agreement_embedding)",
    )
    args = parser.parse_args()
    import duckdb
    import numpy as np

    from dataset_assets.quality.classifier import roc_auc
    from dataset_assets.quality.signals import signal_names

    dev = json.loads((Path(__file__).with_name("quality_devset.json")).read_text())
    seeds = duckdb.sql(
        f"select * from read_parquet('{args.lake}/seeds/*/*.parquet', hive_partitioning=true, union_by_name=true)"
    )
    embedding = "embedding_score" if "embedding_score" in seeds.columns else "null"  # seeds written before the column
    rows = duckdb.sql(
        f"select id, quality_score, lm_score, quality_percentile, length_score, {embedding} from seeds"
    ).fetchall()
    by_id = {r[0]: r[1:] for r in rows}
    found = [p for p in dev["pages"] if p["id"] in by_id]
    if len(found) < len(dev["pages"]):
        print(
            f"{len(dev['pages']) - len(found)} judged pages are not in {args.lake}/seeds: run the sample shards "
            "through seeds first"
        )
        if not found:
            return 2
    labels = np.array([p["label"] for p in found])

    def auc(column: int, part: int | None = None):
        pages = [p for p in found if part is None or p.get("part") == part]
        values = [by_id[p["id"]][column] for p in pages]
        if any(v is None for v in values):
            return None  # seeds written without this signal
        return round(float(roc_auc(np.array([p["label"] for p in pages]), np.array(values, dtype=np.float64))), 3)

    calibration = json.loads(Path(args.lake, "quality_classifier", "calibration.json").read_text())
    signals = calibration.get("signals") or {}
    result = {
        "pages": len(found),
        "positives": int(labels.sum()),
        "roc_auc": auc(
            2
        ),  # what seeds keep by: the combined percentile (the classifier's alone without a second signal)
        "roc_auc_classifier": auc(0),
        "roc_auc_reference_lm": auc(1),
        "roc_auc_length": auc(3),
        "roc_auc_embedding": auc(4),
        "signals": signal_names(signals) if signals else [],
        "combine": signals.get("rule"),
        # Part 1 chose the signals and the rule; part 2 was judged afterwards, as a check (see the set's "how").
        "by_part": {
            str(part): {
                "pages": sum(p.get("part") == part for p in found),
                "roc_auc": auc(2, part),
                "roc_auc_classifier": auc(0, part),
            }
            for part in sorted({p.get("part") for p in found})
        },
        "classifier": calibration.get("source"),
        "classifier_heldout_auc": calibration.get("roc_auc"),
        "goal": 0.85,
    }
    write_result(args.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
