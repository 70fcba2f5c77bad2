"""A stand-in for the GPU tiers' OLMo-core trainer, launched by `proxy_models` through Dagster Pipes:
it reads what Pipes hands it (the spec, the run, where the tokens are), checks the token files against
their manifest, and reports what a trainer reports (tokens seen, a loss curve, FLOPs, its own scores),
without a GPU. It proves the launching, the hand-over and the bookkeeping, not training."""

import hashlib
from pathlib import Path

from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    extras = pipes.extras
    spec, tokens = extras["spec"], extras["tokens"]
    folder = Path(tokens["lake"]) / tokens["folder"]
    for name, entry in tokens["manifest"]["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name
    available = tokens["manifest"]["tokens"]
    seen = min(spec["tokens"], 4 * available)
    pipes.log.info(
        f"fake {spec['tier']} trainer: {seen} tokens of {extras['run']['mixture']}@{extras['run']['version']}"
    )
    pipes.report_asset_materialization(
        metadata={
            "tokens_seen": seen,
            "steps": 3,
            "loss_curve": {"raw_value": [[1, 5.0], [2, 4.0], [3, 3.5]], "type": "json"},
            "parameters": 1234,
            "flops": float(6 * 1234 * seen),
            "train_seconds": 0.1,
            "evaluations": {
                "raw_value": [
                    {"eval_set": "held-out", "metric": "bits_per_byte", "value": 2.5 + extras["run"]["seed"]}
                ],
                "type": "json",
            },
        }
    )
