"""Where proxy runs and their scores live in the lake.

    <lake>/proxy_models/mixture=<n>/version=<v>/proxy=<spec>/seed=<s>/checkpoint.pt, run.json
    <lake>/proxy_evaluations/mixture=<n>/version=<v>/proxy=<spec>/seed=<s>/part-00000.parquet

`run.json` says exactly what a run trained on (the mixture version and its token manifest's
checksum), how (the spec and its digest), and what it cost (tokens seen, wall time, estimated FLOPs,
the loss curve); it is written when training finishes. `proxy_evaluations` is the data contract:
one row per (proxy run, evaluation set, metric), read with DuckDB.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Optional

import pyarrow as pa

MODELS = "proxy_models"
EVALUATIONS = "proxy_evaluations"
CHECKPOINT = "checkpoint.pt"
RUN = "run.json"

EVALUATION_SCHEMA = pa.schema(
    [
        ("mixture", pa.string()),
        ("version", pa.string()),
        ("proxy", pa.string()),
        ("tier", pa.string()),
        ("seed", pa.int64()),
        ("train_tokens", pa.int64()),
        ("eval_set", pa.string()),
        ("metric", pa.string()),  # bits_per_byte, accuracy, margin_bits
        ("value", pa.float64()),
        ("spec_digest", pa.string()),
        ("tokens_manifest_sha256", pa.string()),
        ("parameters", pa.int64()),
        ("flops", pa.float64()),
    ]
)


@dataclass(frozen=True)
class RunKey:
    mixture: str
    version: str
    proxy: str
    seed: int

    @property
    def spec(self) -> str:
        return f"{self.mixture}@{self.version}"

    def partition(self) -> dict[str, str]:
        return {"mixture": self.mixture, "version": self.version, "proxy": self.proxy, "seed": str(self.seed)}

    def parts(self, asset: str, file: str) -> list[str]:
        return [asset, *(f"{k}={v}" for k, v in self.partition().items()), file]


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def save_checkpoint(lake, key: RunKey, state: dict) -> None:
    """Atomic, like every lake write: a run killed while saving keeps the previous checkpoint."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    lake.put_bytes(key.parts(MODELS, CHECKPOINT), buffer.getvalue())


def load_checkpoint(lake, key: RunKey) -> Optional[dict]:
    import torch

    parts = key.parts(MODELS, CHECKPOINT)
    if not lake.exists(parts):
        return None
    return torch.load(io.BytesIO(lake.get_bytes(parts)), weights_only=False)


def finished_run(lake, key: RunKey) -> Optional[dict]:
    parts = key.parts(MODELS, RUN)
    return lake.get_json(parts) if lake.exists(parts) else None


def write_run(lake, key: RunKey, record: dict) -> None:
    lake.put_json(key.parts(MODELS, RUN), record)


def write_evaluations(lake, key: RunKey, rows: list[dict]):
    table = pa.Table.from_pylist(rows, schema=EVALUATION_SCHEMA)
    return lake.write_partition(EVALUATIONS, key.partition(), table.to_batches(), EVALUATION_SCHEMA)


def read_evaluations(lake) -> pa.Table:
    """Every stored score (an empty table when there are none)."""
    files = lake.all_part_files(EVALUATIONS)
    if not files:
        return EVALUATION_SCHEMA.empty_table()
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(f, filesystem=lake.fs, schema=EVALUATION_SCHEMA) for f in files])
