"""Throughput of the synthetic-text checks, in output tokens per second on one core, against the rate
they must keep up with (two H100s at datatrove's 9,220 output tokens/s each: 18,440/s; goal 20,000).

    python benchmarks/quality_checks.py [--rows-lake data/lake] [--seeds-lake data/lake] [--repeats 5]

Rows: the rephrased rows of a lake the real generator wrote (`make demo`'s data/lake, or the scratch
lake of benchmarks/strategy_survey.py), with their seeds. Every row check runs with the source
document at hand (lid.176 included), then the partition check over all rows; tokens are the rows'
own completion_tokens. Pinned to one core. Writes benchmarks/results/quality_checks.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import pin_to_one_core, write_result  # noqa: E402


def survey_rows(lake_root: str) -> list[dict]:
    import duckdb

    from resources.lake import Lake

    lake = Lake(root=lake_root)
    con = duckdb.connect()
    rows = con.execute(
        "select strategy, source_id, text, completion_tokens from "
        f"read_parquet('{lake.path('rephrased')}/*/*/*.parquet', hive_partitioning=true)"
    ).fetchall()
    return [{"strategy": s, "source_id": sid, "text": t, "completion_tokens": n} for s, sid, t, n in rows if t]


def seed_texts(lake_root: str) -> dict[str, str]:
    import duckdb

    rows = duckdb.sql(
        f"select id, text from read_parquet('{lake_root}/seeds/*/*.parquet', hive_partitioning=true) where kept"
    ).fetchall()
    return dict(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-lake", default="data/lake", help="a lake with rephrased rows (make demo writes one)")
    parser.add_argument("--seeds-lake", default="data/lake")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--copies", type=int, default=4, help="repeat the row set this many times per pass")
    args = parser.parse_args()
    core = pin_to_one_core()

    from dataset_assets.crawl.langid import language_probabilities
    from dataset_assets.rephrase.checks import SourceView, safe_check_row
    from dataset_assets.rephrase.echo import PromptEcho
    from dataset_assets.rephrase.partition_checks import template_duplicates
    from dataset_assets.rephrase.strategies import load_strategies

    rows = survey_rows(args.rows_lake)
    sources = seed_texts(args.seeds_lake)
    rows = [r for r in rows if r["source_id"] in sources] * args.copies
    if not rows:
        print(
            f"no rephrased rows with their seeds under {args.rows_lake} / {args.seeds_lake}: run strategy_survey.py "
            "first"
        )
        return 2
    strategies = load_strategies()
    echoes = {
        n: PromptEcho.from_messages([m.content for st in s.steps for m in st.messages]) for n, s in strategies.items()
    }
    tokens = sum(r["completion_tokens"] for r in rows)
    language_probabilities("warm up the model")
    rates, row_share = [], []
    for _ in range(args.repeats):
        start = time.process_time()
        survivors = []
        for i, r in enumerate(rows):
            s = strategies[r["strategy"]]
            scores = safe_check_row(
                r["text"],
                SourceView.of(sources[r["source_id"]], "en"),
                s.checks,
                echoes[r["strategy"]],
                language_probabilities,
            )
            if not scores.flags:
                survivors.append((f"{i}", f"{r['source_id']}-{i}", r["text"]))
        row_seconds = time.process_time() - start
        template_duplicates(survivors, strategies["summary"].checks)
        seconds = time.process_time() - start
        rates.append(tokens / seconds)
        row_share.append(row_seconds / seconds)
    result = {
        "core": core,
        "rows": len(rows),
        "output_tokens": tokens,
        "tokens_per_cpu_second": {
            "min": round(min(rates)),
            "median": round(statistics.median(rates)),
            "max": round(max(rates)),
        },
        "row_checks_share_of_time": round(statistics.median(row_share), 3),
        "goal_tokens_per_second": 20000,
    }
    write_result("quality_checks", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
