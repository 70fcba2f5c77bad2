"""The GPU tiers' side of a run, without Dagster: the trainer's own environment (OLMo-core's pins clash
with this project's, so it has its own python, PROXY_GPU_PYTHON), the command and what Dagster Pipes
hands it, and the run record made from what it reports."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

from dataset_assets.proxy import store
from dataset_assets.proxy.spec import ProxySpec
from dataset_assets.proxy.tokens import folder

REPORTED = ("tokens_seen", "loss_curve", "parameters", "flops")


class MissingEnvironment(RuntimeError):
    """The tier's environment is not installed or not named."""


def command(spec: ProxySpec, python: Optional[str]) -> list[str]:
    if not python or not Path(python).exists():
        raise MissingEnvironment(
            f"{spec.name} (tier {spec.tier}) trains with OLMo-core in its own environment, whose pins clash with this "
            "project's: python -m venv .venv-olmo && .venv-olmo/bin/pip install ai2-olmo-core torch, then set "
            f"PROXY_GPU_PYTHON=.venv-olmo/bin/python (now: {python or 'unset'})"
        )
    return [python if part == "{gpu_python}" else part for part in spec.command]


def extras(lake, key: store.RunKey, spec: ProxySpec, manifest: dict) -> dict:
    """What the trainer gets through Pipes: the spec, the run, and where its tokens are."""
    return {
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items() if k != "path"},
        "run": {**key.partition(), "seed": key.seed},
        "tokens": {
            "manifest": manifest,
            "lake": lake.uri(),
            "folder": "/".join(folder(key.mixture, key.version, manifest["tokenizer"]["key"])),
        },
    }


def record(key: store.RunKey, spec: ProxySpec, manifest: dict, reported: dict) -> dict:
    """run.json from the trainer's report (ValueError naming what it left out)."""
    missing = [k for k in REPORTED if k not in reported]
    if missing:
        raise ValueError(f"the {spec.tier} trainer did not report {missing}")
    return {
        "spec_digest": spec.digest(),
        "tokens_manifest_sha256": store.manifest_digest(manifest),
        "mixture": key.mixture,
        "version": key.version,
        "proxy": key.proxy,
        "tier": spec.tier,
        "seed": key.seed,
        **{k: reported[k] for k in REPORTED},
        "train_seconds": reported.get("train_seconds", 0.0),
        "steps": reported.get("steps", 0),
        "evaluations": reported.get("evaluations", []),  # the trainer scores its own model
    }


def evaluation_rows(key: store.RunKey, spec: ProxySpec, run: dict, scores: list[dict]) -> list[dict]:
    """The contract's rows for scores ({eval_set, metric, value}) of a run."""
    base = {
        "mixture": key.mixture,
        "version": key.version,
        "proxy": key.proxy,
        "tier": spec.tier,
        "seed": key.seed,
        "train_tokens": run["tokens_seen"],
        "spec_digest": run["spec_digest"],
        "tokens_manifest_sha256": run["tokens_manifest_sha256"],
        "parameters": run["parameters"],
        "flops": run["flops"],
    }
    return [{**base, **score} for score in scores]
