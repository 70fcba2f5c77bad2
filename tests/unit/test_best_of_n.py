"""Best of n: a strategy's `sampling.n` samples per source at the last step, the first that passes every
row check becomes the row, the others are tries (counted, never rows), and every generated token is paid."""

from __future__ import annotations

import dataclasses
import json

import pyarrow.parquet as pq

from dataset_assets.rephrase.chunks import plan_items
from dataset_assets.rephrase.generate import rephrase_partition
from dataset_assets.rephrase.store import REPHRASED_SCHEMA, finished_partitions, partition_status
from dataset_assets.rephrase.strategies import Strategy, load_strategy, prompt_hash
from resources.lake import Lake
from resources.llm import ChatRequest, Completion
from tests.support.engines import ScriptedEngine
from tests.unit.test_rephrase import PROMPTS, read_rows, seeds

LOOP = "Question: What is the river?\nAnswer: The river is long and the river is wide.\n" * 12


class FirstSampleLoops(ScriptedEngine):
    """ScriptedEngine whose first sample of every request is a loop (a row check drops it); the other
    samples are its usual well-formed Q/A. Gets n > 1 as copies (`<id>#<k>`), like any engine without
    native n."""

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        out = super()._generate(requests)
        for comp in out:
            if "#" not in comp.request_id or comp.request_id.endswith("#1"):
                comp.text = LOOP
        return out


def with_n(strategy: Strategy, n: int, mode: str = "retry") -> Strategy:
    return dataclasses.replace(strategy, sampling=dataclasses.replace(strategy.sampling, n=n, n_mode=mode))


def test_n_samples_rescue_rows_that_one_sample_loses_and_every_token_is_counted(tmp_path):
    qa = with_n(load_strategy(PROMPTS / "qa.toml"), 1)
    one = rephrase_partition(Lake(root=str(tmp_path / "n1")), FirstSampleLoops(), qa, "s1", seeds(6), chunk_docs=4)
    assert one.rows == 6 and one.kept == 0 and one.rescued == 0 and one.generated_samples == 6
    (reason,) = one.drops  # the loop's drop reason, the only one
    assert reason == "repetition"

    lake, engine = Lake(root=str(tmp_path / "n2")), FirstSampleLoops()
    two = rephrase_partition(lake, engine, with_n(qa, 2), "s1", seeds(6), chunk_docs=4)
    rows = read_rows(lake, "s1", "qa")
    assert two.rows == len(rows) == 6 and two.kept == 6 and two.rescued == 6
    assert all(r["kept"] and r["text"].startswith("Question:") for r in rows)  # the second sample, not the loop
    assert all(r["samples"] == 2 and r["try_reasons"] == ["repetition"] for r in rows)
    # Both samples' tokens are the row's cost (ScriptedEngine reports 120 per sample), and the manifest
    # counts the tries by reason.
    assert all(r["completion_tokens"] == 240 for r in rows) and two.completion_tokens == 6 * 240
    assert len(engine.seen) == 12 and json.loads(rows[0]["sampling"])["n"] == 2
    assert json.loads(rows[0]["sampling"])["n_mode"] == "retry"
    ((_, _, manifest),) = finished_partitions(lake)
    assert manifest["samples"] == 12 and manifest["try_drops"] == {"repetition": 6} and manifest["rescued"] == 6

    # Retry (the default) stops at the first passing sample: n = 4 costs what n = 2 did here.
    lake4, retry = Lake(root=str(tmp_path / "n4")), FirstSampleLoops()
    four = rephrase_partition(lake4, retry, with_n(qa, 4), "s1", seeds(6), chunk_docs=4)
    assert four.kept == 6 and four.generated_samples == 12 and four.completion_tokens == 6 * 2 * 120
    assert len(retry.seen) == 12 and all(r.n == 1 for r in retry.seen)
    assert sorted({r.request_id.rsplit("#", 1)[1] for r in retry.seen}) == ["1", "2"]  # two rounds, not four
    # Parallel asks for all four at once: the first passing one is the row, the two after it were generated
    # (and paid for) but never needed.
    parallel = rephrase_partition(
        Lake(root=str(tmp_path / "p4")), FirstSampleLoops(), with_n(qa, 4, "parallel"), "s1", seeds(6), chunk_docs=4
    )
    assert parallel.kept == 6 and parallel.generated_samples == 24 and dict(parallel.try_drops) == {"repetition": 6}
    assert parallel.completion_tokens == 6 * 4 * 120
    assert prompt_hash(with_n(qa, 4)) != prompt_hash(with_n(qa, 4, "parallel"))


def test_retry_asks_again_only_for_the_rows_that_failed(tmp_path):
    qa = load_strategy(PROMPTS / "qa.toml")
    items = plan_items(seeds(6), qa, ScriptedEngine().tokenizer())
    failing = {it.item_id for it in items[::2]}

    class SomeLoopOnce(ScriptedEngine):
        def _generate(self, requests):
            out = super()._generate(requests)
            for comp in out:
                if comp.request_id.split(":")[0] in failing and comp.request_id.endswith("#1"):
                    comp.text = LOOP
            return out

    engine = SomeLoopOnce()
    stats = rephrase_partition(Lake(root=str(tmp_path)), engine, with_n(qa, 4), "s1", seeds(6), chunk_docs=8)
    second_round = {r.request_id.split(":")[0] for r in engine.seen if r.request_id.endswith("#2")}
    assert second_round == failing and len(engine.seen) == 6 + len(failing)
    assert stats.kept == 6 and stats.rescued == len(failing) and stats.generated_samples == 6 + len(failing)
    assert stats.requests == 6 + len(failing)  # the run metadata's engine_requests counts the retry round


def test_a_row_no_sample_saves_is_the_first_sample_with_the_others_as_tries(tmp_path):
    class AllLoop(ScriptedEngine):
        def _generate(self, requests):
            out = super()._generate(requests)
            for comp in out:
                comp.text = LOOP
            return out

    lake = Lake(root=str(tmp_path))
    stats = rephrase_partition(lake, AllLoop(), with_n(load_strategy(PROMPTS / "qa.toml"), 3), "s1", seeds(2), 4)
    rows = read_rows(lake, "s1", "qa")
    assert stats.kept == 0 and stats.rescued == 0 and dict(stats.drops) == {"repetition": 2}
    assert all(r["samples"] == 3 and r["try_reasons"] == ["repetition", "repetition"] for r in rows)
    assert all(r["text"].startswith("Question: What is the river?") for r in rows)


def test_one_sample_keeps_the_prompt_hash_and_rows_of_before(tmp_path):
    summary = load_strategy(PROMPTS / "summary.toml")
    assert summary.sampling.n == 1 and prompt_hash(with_n(summary, 1)) == prompt_hash(summary)
    assert prompt_hash(summary) != prompt_hash(with_n(summary, 2))
    assert load_strategy(PROMPTS / "qa.toml").sampling.n == 4  # the shipped default where one try keeps too few
    lake = Lake(root=str(tmp_path))
    rephrase_partition(lake, ScriptedEngine(), summary, "s1", seeds(3), chunk_docs=4)
    rows = read_rows(lake, "s1", "summary")
    assert all(r["samples"] == 1 and r["try_reasons"] == [] for r in rows)
    assert "n" not in json.loads(rows[0]["sampling"])


def test_resume_with_n_reuses_committed_chunks_and_a_changed_n_redoes_them(tmp_path):
    lake, qa2 = Lake(root=str(tmp_path)), with_n(load_strategy(PROMPTS / "qa.toml"), 2)
    rephrase_partition(lake, FirstSampleLoops(), qa2, "s1", seeds(6), chunk_docs=2)
    again = FirstSampleLoops()
    stats = rephrase_partition(lake, again, qa2, "s1", seeds(6), chunk_docs=2)
    assert again.seen == [] and stats.chunks_reused == 3 and stats.kept == 6 and stats.generated_samples == 12
    assert partition_status(lake, {"qa": qa2}, ["s1"], again.generator) == {("s1", "qa"): "current"}
    assert partition_status(lake, {"qa": with_n(qa2, 4, "parallel")}, ["s1"], again.generator) == {
        ("s1", "qa"): "outdated"
    }
    four = FirstSampleLoops()
    stats = rephrase_partition(lake, four, with_n(qa2, 4, "parallel"), "s1", seeds(6), chunk_docs=2)
    assert stats.chunks_generated == 3 and len(four.seen) == 24


def test_an_engine_error_is_not_retried(tmp_path):
    qa = load_strategy(PROMPTS / "qa.toml")  # n = 4, retry
    items = plan_items(seeds(3), qa, ScriptedEngine().tokenizer())
    engine = ScriptedEngine(fail_ids=[items[0].item_id])
    stats = rephrase_partition(Lake(root=str(tmp_path)), engine, qa, "s1", seeds(3), chunk_docs=4)
    assert [r.request_id.split(":")[0] for r in engine.seen].count(items[0].item_id) == 0  # its batch raised alone
    assert stats.kept == 2 and dict(stats.drops) == {"engine_error": 1} and stats.generated_samples == 3


def test_a_chunk_committed_before_the_best_of_n_columns_is_completed_not_regenerated(tmp_path):
    lake, qa = Lake(root=str(tmp_path)), load_strategy(PROMPTS / "qa.toml")
    rephrase_partition(lake, ScriptedEngine(), qa, "s1", seeds(4), chunk_docs=2)
    for path in lake.partition_files("rephrased", {"shard": "s1", "strategy": "qa"}):
        old = pq.read_table(path, filesystem=lake.fs).drop_columns(["samples", "try_reasons"])
        meta = {k.decode(): v.decode() for k, v in old.schema.metadata.items()}
        lake.write_parquet(path, old.to_batches(), old.schema.remove_metadata(), meta)  # as an older release wrote
        assert "samples" not in pq.read_schema(path, filesystem=lake.fs).names
    engine = ScriptedEngine()
    stats = rephrase_partition(lake, engine, qa, "s1", seeds(4), chunk_docs=2)
    assert engine.seen == [] and stats.chunks_reused == 2 and stats.generated_samples == 4
    for path in lake.partition_files("rephrased", {"shard": "s1", "strategy": "qa"}):
        assert pq.read_schema(path, filesystem=lake.fs).names == REPHRASED_SCHEMA.names
    rows = read_rows(lake, "s1", "qa")
    assert len(rows) == 4 and all(r["samples"] == 1 and r["try_reasons"] == [] for r in rows)


def test_an_engine_without_native_n_gets_copies_and_answers_in_request_order():
    engine = ScriptedEngine()
    requests = [
        ChatRequest("a", [{"role": "user", "content": " ".join(["one two"] * 20)}], 8, n=3),
        ChatRequest("b", [{"role": "user", "content": " ".join(["three four"] * 20)}], 8),
    ]
    out = engine.generate(requests)
    assert [c.request_id for c in out] == ["a", "b"] and [len(c.others) for c in out] == [2, 0]
    assert [r.request_id for r in engine.seen] == ["a#1", "a#2", "a#3", "b"] and engine.requests_sent == 2
    assert all(o.request_id == "a" for o in out[0].others)
    assert [c.completion_tokens for c in (out[0], *out[0].others)] == [120, 120, 120]
