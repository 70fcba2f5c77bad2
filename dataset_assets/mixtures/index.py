"""Token counts of every kept upstream row, cached in the lake per partition content and tokenizer.

Lake layout: `mixtures/_index/<format>-<tokenizer fingerprint>/<partition data version>.parquet`.
Counting uses the project's one tokenizer wrapper (`resources.tokenizer`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from dataset_assets import settings
from dataset_assets.mixtures.pull import MIXTURES
from dataset_assets.mixtures.sampling import row_key
from dataset_assets.mixtures.upstream import Partition
from resources.lake import Lake
from resources.tokenizer import load_tokenizer

INDEX_FORMAT = "3"

INDEX_SCHEMA = pa.schema(
    [
        ("component", pa.string()),
        ("shard", pa.string()),
        ("id", pa.string()),
        ("tokens", pa.int32()),
        ("key", pa.uint64()),  # md5 of component, shard and id: every random choice is derived from it
    ]
)


class TokenCounter:
    """Token counts per text from anything with `encode_batch` and `fingerprint` (resources.tokenizer)."""

    def __init__(self, tokenizer, name: str | None = None):
        self._tok = tokenizer
        self.name = name or getattr(tokenizer, "name", type(tokenizer).__name__)
        self.fingerprint = tokenizer.fingerprint

    def count(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self._tok.encode_batch(texts)]


def token_counter(tokenizer=None) -> TokenCounter:
    """A counter from a tokenizer path (default: MIXTURE_TOKENIZER, else GPT-2) or a tokenizer object."""
    tokenizer = tokenizer or settings.mixture_tokenizer()
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if path.suffix == ".json" and not path.is_file():
            raise FileNotFoundError(
                f"mixture tokenizer {path} does not exist: pass a tokenizer.json (config `tokenizer`)"
            )
        # The file's name, as manifests have always recorded it.
        return TokenCounter(load_tokenizer(str(path)), path.name if path.is_file() else None)
    if hasattr(tokenizer, "count"):
        return tokenizer
    return TokenCounter(tokenizer)


def _index_path(counter, part: Partition) -> list[str]:
    return [MIXTURES, "_index", f"{INDEX_FORMAT}-{counter.fingerprint}", f"{part.data_version}.parquet"]


def partition_index(lake: Lake, part: Partition, counter, batch_size: int = 1024) -> None:
    """Cache the kept rows of one partition (component, shard, id, tokens, key) in the lake, unless there."""
    cache = _index_path(counter, part)
    if lake.exists(cache):
        return
    batches = []
    for f in part.files:
        with lake.fs.open_input_file(f) as source:
            for batch in pq.ParquetFile(source).iter_batches(
                batch_size=batch_size, columns=["id", "shard", "kept", "text"]
            ):
                batch = batch.filter(pc.fill_null(batch.column("kept"), False))
                n = batch.num_rows
                if not n:
                    continue
                tokens = counter.count([t or "" for t in batch.column("text").to_pylist()])
                ids = batch.column("id")
                keys = [
                    row_key(part.component, shard, i)
                    for shard, i in zip(batch.column("shard").to_pylist(), ids.to_pylist())
                ]
                batches.append(
                    pa.record_batch(
                        [
                            pa.array([part.component] * n, pa.string()),
                            batch.column("shard"),
                            ids,
                            pa.array(tokens, pa.int32()),
                            pa.array(keys, pa.uint64()),
                        ],
                        schema=INDEX_SCHEMA,
                    )
                )
    lake.write_parquet(lake.path(*cache), batches, INDEX_SCHEMA)


def load_index(lake: Lake, parts: list[Partition], counter) -> pa.Table:
    """Kept rows of every partition with token counts and a row number `rid`; tokenises only what is not cached."""
    for part in parts:
        partition_index(lake, part, counter)
    files = [lake.path(*_index_path(counter, p)) for p in parts]
    table = pads.dataset(files, filesystem=lake.fs, format="parquet", schema=INDEX_SCHEMA).to_table()
    return table.append_column("rid", pa.array(np.arange(table.num_rows, dtype=np.int64)))
