"""Fault drills: the same partition written by two processes at once ends as one complete copy."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq

from resources.lake import Lake
from tests.conftest import ROOT

REPHRASE_TWICE = """
import sys
from dataset_assets.rephrase.generate import rephrase_partition
from dataset_assets.rephrase.strategies import load_strategy
from resources.lake import Lake
from tests.support.engines import ScriptedEngine
from tests.unit.test_rephrase import seeds, PROMPTS
engine = ScriptedEngine(delay_seconds=0.02)
rephrase_partition(Lake(root=sys.argv[1]), engine, load_strategy(PROMPTS / "qa.toml"), "s1", seeds(20), chunk_docs=3)
print("done")
"""

WRITE_PARTITION = """
import sys
import pyarrow as pa
from resources.lake import Lake
schema = pa.schema([("id", pa.string()), ("writer", pa.string())])
def batches():
    for b in range(50):
        ids = [f"{b}-{i}" for i in range(2000)]
        yield pa.RecordBatch.from_pydict({"id": ids, "writer": [sys.argv[2]] * 2000}, schema=schema)
Lake(root=sys.argv[1]).write_partition("crawl_docs", {"shard": "s1"}, batches(), schema)
print("done")
"""


def run_together(script: str, *argsets) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for args in argsets
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and all("done" in o for o in outs)


def test_two_writers_of_one_partition_leave_one_complete_file(tmp_path):
    run_together(WRITE_PARTITION, (str(tmp_path), "a"), (str(tmp_path), "b"))
    lake = Lake(root=str(tmp_path))
    files = lake.partition_files("crawl_docs", {"shard": "s1"})
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 100_000 and len(set(table.column("writer").to_pylist())) == 1  # one writer's copy, whole
    assert not list((tmp_path / "_staging").rglob("*.parquet"))


def test_two_runs_of_one_rephrased_partition_leave_each_source_once(tmp_path):
    run_together(REPHRASE_TWICE, (str(tmp_path),), (str(tmp_path),))
    lake = Lake(root=str(tmp_path))
    rows = lake.read_partition("rephrased", {"shard": "s1", "strategy": "qa"}).to_pylist()
    assert sorted(r["source_id"] for r in rows) == [f"doc{i:03d}" for i in range(20)]
    assert len(lake.partition_files("rephrased", {"shard": "s1", "strategy": "qa"})) == 7
    assert lake.exists(["rephrased", "shard=s1", "strategy=qa", "_manifest.json"])
