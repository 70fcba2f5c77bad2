"""Running the graph's stages in process, in dependency order, through Dagster's own execution
(`dataset-assets run`): every step is a real run in the instance, visible in the UI afterwards."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

from dagster import AssetKey

from dataset_assets import settings
from dataset_assets.orchestration.stop_signals import Interrupted, StopSignals

# Stages in dependency order and how each is partitioned: once, per shard, per key of the asset's own
# static partitions (dedup bands, references, recipes), rectangles of shard x strategy (one engine per
# run), per finished rephrased partition.
STAGES = [
    ("crawl_docs", "shard"),
    ("dedup_signatures", "shard"),
    ("dedup_buckets", "static"),
    ("dedup_clusters", None),
    ("quality_classifier", None),
    ("seeds", "shard"),
    ("rephrased", "rectangles"),
    ("natural_unigrams", "shard"),
    ("seed_unigrams", "shard"),
    ("rephrased_unigrams", "rephrased"),
    ("reference_unigrams", "static"),
    ("mixtures", "static"),
    ("corpus_stats", None),
]


def register_shards(instance, landing, lake) -> Optional[list[str]]:
    """Add a partition for the shard files in the landing location that have none, CRAWL_BATCH_FILES
    files each (`status/batches.py`); returns the partition keys of every file there, in partition order, or
    None (the cause on stderr) when batches are on and the lake's batch registry cannot be reached."""
    try:
        return _register(instance, landing, lake)
    except OSError as exc:
        print(f"could not register the landing's files in batches: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None


def _register(instance, landing, lake) -> list[str]:
    from dataset_assets.orchestration.graph import crawl_shards
    from dataset_assets.status import batches

    files = sorted(landing.files())
    registered = instance.get_dynamic_partitions(crawl_shards.name)
    batch_of = batches.for_keys(lake, registered).batch_of(registered)
    new = [f for f in files if f not in batch_of]
    if new:
        groups = batches.plan(new, registered, settings.crawl_batch_files())
        keys = batches.register(lake, groups)
        _record_landing(lake, landing.location)
        instance.add_dynamic_partitions(crawl_shards.name, keys)
        registered = [*registered, *keys]
        batch_of.update({f: key for key, group in zip(keys, groups) for f in group})
    there = {batch_of[f] for f in files}
    return [key for key in registered if key in there]


def _record_landing(lake, location: str) -> None:
    """Where these files came from, for `status` (best effort: an unreachable lake fails the steps that
    need it, by name, instead of stopping the registration here)."""
    from dataset_assets.status import landings

    try:
        landings.record(lake, location)
    except OSError as exc:
        print(f"could not record the landing {location} in the lake: {str(exc).splitlines()[0]}", file=sys.stderr)


def report(label: str, result, start: float, failures: list[str]) -> None:
    status = "ok" if result.success else "FAILED"
    print(f"{status:6} {label} ({time.monotonic() - start:.1f} s, run {result.run_id[:8]})", flush=True)
    if result.success:
        return
    failures.append(label)
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None) if event.is_failure else None
        while error is not None and error.cause is not None:  # Dagster wraps the user's error: show its cause
            error = error.cause
        if error is not None:
            print(f"       {error.message.strip().splitlines()[0]}", file=sys.stderr)


@dataclass
class Step:
    """One Dagster run the runner will make: a partition, or a shard x strategy rectangle."""

    name: str
    label: str
    partition_key: Optional[str] = None
    tags: Optional[dict] = None
    config: Optional[dict] = None


class StageRunner:
    """Executes stages one partition (or one shard x strategy rectangle) at a time; collects failures,
    the steps that finished and, when a stop signal ends the run, what was in flight and what never
    started (`stop_signals.py`)."""

    def __init__(self, defs, instance, log_level: str, shards: list[str], stop: Optional[StopSignals] = None):
        self.defs, self.instance, self.shards = defs, instance, shards
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.logging = {"loggers": {"console": {"config": {"log_level": log_level}}}}
        self.lake = defs.resources["lake"]
        self.stop = stop
        self.failures: list[str] = []
        self.finished: list[str] = []
        self.in_flight: Optional[str] = None  # the step a stop signal interrupted
        self.not_started: list[str] = []  # steps of the current stage left, then the stages left

    def execute(self, step: Step) -> None:
        start = time.monotonic()
        run_config = {**self.logging, **({"ops": {step.name: {"config": step.config}}} if step.config else {})}
        with self.stop.inside_dagster() if self.stop else nullcontext():
            result = self.job.execute_in_process(
                instance=self.instance,
                partition_key=step.partition_key,
                asset_selection=[AssetKey(step.name)],
                raise_on_error=False,
                tags={"dagster/from": "dataset-assets cli", **(step.tags or {})},
                run_config=run_config,
            )
        if self.stop and not result.success:
            try:
                self.stop.check()
            except Interrupted as signal:
                self.in_flight = step.label
                print(
                    f"{'STOPPED':6} {step.label} ({time.monotonic() - start:.1f} s, run {result.run_id[:8]}): "
                    f"{signal.name}; left uncommitted, the next run resumes it",
                    flush=True,
                )
                raise
        if result.success:  # before the report line: a signal may land while it prints
            self.finished.append(step.label)
        report(step.label, result, start, self.failures)
        if step.name == "dedup_clusters" and result.success:
            _print_clusters(result)
        if self.stop:
            self.stop.check()

    def run(self, selected: list[str], strategies: dict, chosen: list[str], chunk_docs: int, max_output_tokens) -> None:
        stages = [(name, partitioning) for name, partitioning in STAGES if name in selected]
        for n, (name, partitioning) in enumerate(stages):
            self.not_started = [f"{later} (every partition)" for later, _ in stages[n:]]
            steps = self._steps(name, partitioning, strategies, chosen, chunk_docs, max_output_tokens)
            for i, step in enumerate(steps):
                self.not_started = [s.label for s in steps[i + 1 :]] + [
                    f"{later} (every partition)" for later, _ in stages[n + 1 :]
                ]
                self.execute(step)
        self.not_started = []

    def _steps(
        self, name: str, partitioning, strategies: dict, chosen: list[str], chunk_docs: int, max_output_tokens
    ) -> list[Step]:
        if partitioning is None:
            return [Step(name, name)]
        if partitioning == "shard":
            return [Step(name, f"{name}[{key}]", key) for key in self.shards]
        if partitioning == "static":
            keys = self.defs.resolve_assets_def(AssetKey(name)).partitions_def.get_partition_keys()
            return [Step(name, f"{name}[{key}]", key) for key in keys]
        if partitioning == "rephrased":
            return self._finished_rephrased(name, chosen)
        return self._rephrase(name, strategies, chosen, chunk_docs, max_output_tokens)

    def _finished_rephrased(self, name: str, chosen: list[str]) -> list[Step]:
        from dataset_assets.rephrase.store import finished_partitions
        from dataset_assets.status import batches

        # A partition (a batch of shard files) is counted once every file of it is rephrased.
        finished = {(shard, strategy) for shard, strategy, _ in finished_partitions(self.lake)}
        registry = batches.for_keys(self.lake, self.shards)
        return [
            Step(name, f"{name}[{key}|{strategy}]", f"{key}|{strategy}")
            for key in self.shards
            for strategy in sorted(chosen)
            if all((f, strategy) in finished for f in registry.files(key))
        ]

    def _rephrase(
        self, name: str, strategies: dict, chosen: list[str], chunk_docs: int, max_output_tokens
    ) -> list[Step]:
        """The missing or outdated (shard, strategy) pairs, as few rectangles (one engine load each)."""
        from dataset_assets.rephrase.planning import range_tags, rectangles
        from dataset_assets.status.judge import rephrase_needed

        engine = self.defs.resources["engine"]
        wanted = {k: strategies[k] for k in chosen}
        needed, summary = rephrase_needed(self.lake, wanted, self.shards, engine.generator, max_output_tokens)
        print(
            f"rephrased: {len(needed)} of {summary['partitions']} partitions missing or outdated "
            f"({summary['outdated']} outdated)"
        )
        shard_order = [k for k in self.instance.get_dynamic_partitions("crawl_shards") if k in self.shards]
        config = {"chunk_docs": chunk_docs, "max_output_tokens": max_output_tokens}
        return [
            Step(
                name,
                f"rephrased[{shards[0]}..{shards[-1]} x {','.join(names)}]",
                None,
                range_tags(shards, names),
                config,
            )
            for shards, names in rectangles(needed, shard_order, sorted(strategies))
        ]

    def stopped_summary(self, signal: Interrupted) -> str:
        """What a stop signal left: the steps that finished, the one in flight, the ones never started."""
        lines = [f"stopped by {signal.name}: nothing further was started"]
        lines.append(f"finished: {len(self.finished)} step(s)" + (f" ({_few(self.finished)})" if self.finished else ""))
        if self.in_flight:
            lines.append(f"interrupted (uncommitted, resumed by the next run): {self.in_flight}")
        if self.not_started:
            lines.append(f"not started: {len(self.not_started)} step(s) ({_few(self.not_started)})")
        return "\n".join(lines)


def _few(labels: list[str], shown: int = 5) -> str:
    return ", ".join(labels[:shown]) + (f" and {len(labels) - shown} more" if len(labels) > shown else "")


def _print_clusters(result) -> None:
    meta = {
        k: v.value for e in result.get_asset_materialization_events() for k, v in e.materialization.metadata.items()
    }
    print(
        f"       {meta['clusters']} duplicate clusters over {meta['shards']} shards: removed "
        f"{meta['removed_exact']} exact and {meta['removed_near']} near duplicates; cluster sizes "
        f"{meta['cluster_sizes']}; plot {meta['plot_path']}"
    )
