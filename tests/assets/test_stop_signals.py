"""`dataset-assets run` stops when told: Ctrl-C (SIGINT) or SIGTERM ends it within seconds, the step in
flight is left uncommitted, nothing further starts, the summary says what finished and what did not,
the exit code is 130 / 143, and the next run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from dataset_assets.status import catalog
from resources.lake import Lake
from tests.conftest import ROOT, english, write_jsonl_gz

BIG = "a-big.jsonl.gz"  # sorts first: the first step, long enough to be signalled mid-step
SMALL = [f"b{i}.jsonl.gz" for i in range(3)]


def landing_with_a_big_file(root, big_documents: int = 40_000):
    landing = root / "landing"
    landing.mkdir()
    body = english(0, "river")
    write_jsonl_gz(
        landing / BIG,
        [{"id": f"big-{j}", "text": f"{body} {j}", "url": f"http://big/{j}"} for j in range(big_documents)],
    )
    for i, name in enumerate(SMALL):
        write_jsonl_gz(landing / name, [{"id": f"s{i}", "text": english(i + 1), "url": f"http://small/{i}"}])
    return landing


def start_run(root, landing, log_level: str = "INFO") -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(root / "home")}
    command = [
        sys.executable,
        "-m",
        "dataset_assets.cli",
        "run",
        "--landing",
        str(landing),
        "--lake",
        str(root / "lake"),
    ]
    command += ["--select", "crawl_docs", "--log-level", log_level]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def signal_when(proc: subprocess.Popen, seen, signum: int, timeout: float = 300) -> tuple[list[str], float]:
    """Send `signum` once `seen(line)` is true of a line of output; (all lines, seconds from the signal to the exit)."""
    lines, sent = [], None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if sent is None and seen(line):
            proc.send_signal(signum)
            sent = time.monotonic()
        assert time.monotonic() < deadline, "\n".join(lines[-20:])
    proc.wait(timeout=60)
    assert sent is not None, "the signal was never sent:\n" + "\n".join(lines[-20:])
    return lines, time.monotonic() - sent


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_step_stops_at_once_leaves_the_step_uncommitted_and_the_next_run_resumes(tmp_path, signum, code):
    landing = landing_with_a_big_file(tmp_path)
    proc = start_run(tmp_path, landing)
    # The step's own progress line (after 5 s of reading the big file): the signal lands mid-step.
    lines, seconds = signal_when(proc, lambda line: f"{BIG}: bytes read" in line, signum)
    output = "\n".join(lines)
    assert proc.returncode == code, output
    assert seconds < 15, f"took {seconds:.1f} s to stop"
    name = signal.Signals(signum).name
    assert f"stopped by {name}: nothing further was started" in output
    assert f"interrupted (uncommitted, resumed by the next run): crawl_docs[{BIG}]" in output
    assert "finished: 0 step(s)" in output and "not started: 3 step(s)" in output
    assert not [line for line in lines if line.startswith("ok")]
    lake = Lake(root=str(tmp_path / "lake"))
    assert lake.partition_values("crawl_docs", "shard") == []  # nothing that looks finished
    assert catalog.needs_rebuild(lake) or catalog.facts(catalog.read(lake), "crawl_docs") == {}
    instance = DagsterInstance.from_config(str(tmp_path / "home"))
    try:  # the interrupted run is recorded as ended, so nothing takes it for a run still in flight
        runs = instance.get_runs(RunsFilter(tags={"dagster/from": "dataset-assets cli"}))
        assert [r.status for r in runs] == [DagsterRunStatus.FAILURE]
    finally:
        instance.dispose()

    again = start_run(tmp_path, landing, log_level="WARNING")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert lake.partition_values("crawl_docs", "shard") == [BIG, *SMALL]
    big = lake.read_partition("crawl_docs", {"shard": BIG}, columns=["id"]).column("id").to_pylist()
    assert len(big) == len(set(big)) == 40_000  # each document exactly once
    assert set(catalog.facts(catalog.read(lake), "crawl_docs")) == {BIG, *SMALL}


def test_a_signal_between_steps_starts_nothing_further_and_names_what_finished(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    names = [f"f{i:02d}.jsonl.gz" for i in range(12)]
    for i, name in enumerate(names):
        write_jsonl_gz(landing / name, [{"id": f"d{i}", "text": english(i), "url": f"http://x/{i}"}])
    proc = start_run(tmp_path, landing, log_level="WARNING")
    oks = []

    def second_ok(line: str) -> bool:
        if line.startswith("ok"):
            oks.append(line)
        return len(oks) == 2

    lines, seconds = signal_when(proc, second_ok, signal.SIGINT)
    output = "\n".join(lines)
    assert proc.returncode == 130 and seconds < 15, output
    done = [line.split()[1] for line in lines if line.startswith("ok")]
    assert 2 <= len(done) <= 3, output  # at most the step already running when the signal came
    assert f"finished: {len(done)} step(s)" in output
    assert f"not started: {len(names) - len(done) - ('interrupted' in output)} step(s)" in output
    lake = Lake(root=str(tmp_path / "lake"))
    assert [f"crawl_docs[{s}]" for s in lake.partition_values("crawl_docs", "shard")] == done
