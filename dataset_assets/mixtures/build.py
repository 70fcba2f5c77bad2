"""Building mixture versions: upstream partitions and their token index, sampling by tokens in DuckDB,
fixed-size Parquet shards, manifest and dataset card, published as immutable `v<n>` directories.

Lake layout under `mixtures/` (a version is written under the lake's `_staging/` and moved here whole):
    <name>/v<n>/part-00000.parquet ...   the rows, `shard_rows` per file, shuffled
    <name>/v<n>/README.md                dataset card (front matter for `datasets.load_dataset`)
    <name>/v<n>/manifest.json            written last: a version without it is unfinished
    <name>/latest.json                   {"version": ...}, replaced atomically
    _index/<format>-<tokenizer>/<data version>.parquet   token counts per upstream partition
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from dataset_assets import settings
from dataset_assets.mixtures.pull import CARD, LATEST, MANIFEST, MIXTURES, file_sha256, finished_versions, version_dirs
from dataset_assets.mixtures.recipe import NATURAL, Recipe, UpstreamError, check_availability
from resources.lake import STAGING, Lake

# Bump when sampling or the row layout changes: every mixture then publishes a new version.
CODE_VERSION = "1"
INDEX_FORMAT = "3"
# The rephrased asset writes this file last in each partition (dataset_assets/rephrase.py):
# part files without it belong to a run that has not finished.
REPHRASED_FINISHED = "_manifest.json"

MIXTURE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # hash of component, shard, source row and repeat: stable across versions
        ("text", pa.string()),
        ("component", pa.string()),  # "natural" or the strategy name
        ("source_id", pa.string()),  # the upstream row the text is: a seeds id or a rephrased id
        ("shard", pa.string()),  # crawl shard
        ("seed_id", pa.string()),  # the seed document behind the row (= source_id for natural rows)
        ("rephrased_id", pa.string()),  # null for natural rows
        ("tokens", pa.int32()),  # in the mixture's tokenizer
        ("repeat", pa.int32()),  # 0 on a row's first use, 1 on its second, ...
        ("prompt_hash", pa.string()),  # of the rephrasing prompt; null for natural rows
        ("generator", pa.string()),  # model and revision that wrote the row; null for natural rows
    ]
)

INDEX_SCHEMA = pa.schema(
    [
        ("component", pa.string()),
        ("shard", pa.string()),
        ("id", pa.string()),
        ("tokens", pa.int32()),
        ("key", pa.uint64()),  # md5 of component, shard and id: every random choice is derived from it
    ]
)


# -- tokens --------------------------------------------------------------------------------------
def default_tokenizer() -> str:
    shared = settings.PROJECT_ROOT.parent / "shared" / "data" / "tokenizers" / "gpt2-tokenizer.json"
    return os.environ.get("MIXTURE_TOKENIZER") or str(shared)


class TokenizerJson:
    """Token counts from a Hugging Face tokenizer.json, in batches (Rust threads do the work)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"mixture tokenizer {path} does not exist: pass a tokenizer.json (config `tokenizer`)")
        self._path = path
        self._tok = None  # loaded on first count: with every token count cached it is never needed
        self.name = path.name
        self.fingerprint = file_sha256(pafs.LocalFileSystem(), str(path))[0][:16]

    def count(self, texts: list[str]) -> list[int]:
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(self._path))
        return [len(e) for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]


class _EncodingCounter:
    """Adapts anything with `encode_batch` and `fingerprint` (resources.tokenizer) to counting."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.name = getattr(tokenizer, "name", type(tokenizer).__name__)
        self.fingerprint = tokenizer.fingerprint

    def count(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self._tok.encode_batch(texts)]


def token_counter(tokenizer=None):
    """A counter from a tokenizer path (default: MIXTURE_TOKENIZER or GPT-2) or a tokenizer object."""
    tokenizer = tokenizer or default_tokenizer()
    if isinstance(tokenizer, (str, Path)):
        if str(tokenizer).endswith(".json"):
            return TokenizerJson(tokenizer)
        from resources.tokenizer import load_tokenizer  # .tiktoken files and model directories

        return _EncodingCounter(load_tokenizer(str(tokenizer)))
    if hasattr(tokenizer, "count"):
        return tokenizer
    return _EncodingCounter(tokenizer)


# -- upstream ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    asset: str
    shard: str
    strategy: Optional[str]
    files: tuple[str, ...]
    data_version: str  # content hash of the partition's part files

    @property
    def component(self) -> str:
        return self.strategy or NATURAL

    def key(self) -> dict[str, str]:
        return {"shard": self.shard, **({"strategy": self.strategy} if self.strategy else {})}


def partition_version(lake: Lake, asset: str, key: dict[str, str], files: list[str]) -> str:
    h = hashlib.sha256(json.dumps([asset, key], sort_keys=True).encode())
    for f in files:
        h.update(f"{f.rsplit('/', 1)[-1]}\x00{file_sha256(lake.fs, f)[0]}\n".encode())
    return h.hexdigest()[:16]


def failed_quality_checks(manifest: dict) -> dict[str, dict]:
    """The partition checks a finished rephrased partition failed at ERROR (from its _manifest.json)."""
    return {name: verdict for name, verdict in (manifest.get("checks") or {}).items() if verdict.get("severity") == "error"}


def upstream_partitions(lake: Lake, recipe: Recipe, excluded: Optional[list] = None) -> list[Partition]:
    """The seeds and rephrased partitions a recipe reads, with content versions; every gap is an error.

    A finished rephrased partition that failed a quality check at ERROR is left out, never silently:
    it is appended to `excluded` with the checks it failed, for the manifest and the run's metadata."""
    rephrased = sorted(c.strategy for c in recipe.components if c.strategy)
    seeds_shards = set(lake.partition_values("seeds", "shard"))
    if recipe.shards is not None:
        shards = list(recipe.shards)
    else:
        shards = sorted(seeds_shards | set(lake.partition_values("crawl_docs", "shard")))
    if not shards:
        raise UpstreamError(f"mixture {recipe.name!r}: the lake at {lake.uri()} holds no seeds: materialise crawl_docs and seeds first")
    missing, found = [], []
    for shard in shards:
        if shard not in seeds_shards:
            missing.append(f"seeds shard={shard}")
        elif any(c.label == NATURAL for c in recipe.components):
            found.append(("seeds", {"shard": shard}))
        for strategy in rephrased:
            key = {"shard": shard, "strategy": strategy}
            finished = [*lake.partition_parts("rephrased", key), REPHRASED_FINISHED]
            if lake.exists(finished):
                failed = failed_quality_checks(lake.get_json(finished))
                if failed:
                    if excluded is not None:
                        excluded.append({"partition": key, "failed_checks": failed})
                else:
                    found.append(("rephrased", key))
            elif lake.has_partition("rephrased", key):
                missing.append(f"rephrased shard={shard} strategy={strategy} (unfinished: no {REPHRASED_FINISHED})")
            else:
                missing.append(f"rephrased shard={shard} strategy={strategy}")
    if missing:
        shown = "; ".join(missing[:12]) + (f"; and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise UpstreamError(
            f"{recipe.path or recipe.name}: mixture {recipe.name!r} needs {len(missing)} upstream partition(s) that "
            f"{lake.uri()} does not hold: {shown}. Materialise them, or list the shards to use in the recipe's `shards` field."
        )

    def version(found_one) -> Partition:
        asset, key = found_one
        files = lake.partition_files(asset, key)
        return Partition(asset, key["shard"], key.get("strategy"), tuple(files), partition_version(lake, asset, key, files))

    # Hashing is I/O and sha256, both of which release the GIL: two threads hash two partitions at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(version, found))


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
            for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_size, columns=["id", "shard", "kept", "text"]):
                batch = batch.filter(pc.fill_null(batch.column("kept"), False))
                n = batch.num_rows
                if not n:
                    continue
                tokens = counter.count([t or "" for t in batch.column("text").to_pylist()])
                ids = batch.column("id")
                keys = [row_key(part.component, shard, i) for shard, i in zip(batch.column("shard").to_pylist(), ids.to_pylist())]
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


def mixture_identity(recipe: Recipe, parts: list[Partition], tokenizer_fingerprint: str) -> str:
    """Same recipe, upstream content, tokenizer and code -> same identity -> the existing version is reused."""
    payload = {
        "recipe": recipe.content(),
        "upstream": [[p.asset, p.key(), p.data_version] for p in parts],
        "tokenizer": tokenizer_fingerprint,
        "code_version": CODE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# -- sampling ------------------------------------------------------------------------------------
# Random choices come from each row's stable 64-bit key mixed with a salt per purpose, seed and pass,
# so they are cheap integers for DuckDB to sort and identical on every machine.
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def row_key(component: str, shard: str, row_id: str) -> int:
    return int.from_bytes(hashlib.md5(f"{component}|{shard}|{row_id}".encode()).digest()[:8], "big")


def _salt(*parts) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.md5("|".join(map(str, parts)).encode()).digest()[:8], "big"))


def mix64(keys: np.ndarray, salt: np.uint64) -> np.ndarray:
    """splitmix64's finaliser of key XOR salt: well-spread 64-bit values (uint64 arithmetic wraps)."""
    x = keys ^ salt
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def _plan(recipe: Recipe, targets: dict[str, int], available: dict[str, int]) -> list[dict]:
    """Per component: whole passes over its rows, then a partial pass in shuffled order up to the remainder.

    The partial pass takes rows up to the remainder, plus the row that crosses it when that lands
    nearer the target than stopping short, but never goes past max_repetition x available tokens.
    """
    plan = []
    for label, target in targets.items():
        have = available[label]
        full = target // have
        remainder = target - full * have
        cap = int(recipe.max_repetition * have) - full * have
        plan.append({"component": label, "passes": full + (remainder > 0), "full_passes": full, "remainder": remainder, "last_cap": cap})
    return plan


def expand(index: pa.Table, plan: list[dict], seed: int) -> pa.Table:
    """One row per (index row, pass): `part` numbers the (component, pass) pieces; `order_key` picks
    the rows of a partial pass, `shuffle_key` is the output order, `row_key` the mixture row id (the
    same for every seed and version). mix64 is a bijection, so keys are unique within a component
    exactly when the rows' stable keys are, which is checked here."""
    keys = index.column("key").to_numpy()
    tokens = index.column("tokens").to_numpy()
    pieces = []
    for step in plan:
        rows = np.flatnonzero(pc.equal(index.column("component"), step["component"]).to_numpy(zero_copy_only=False))
        k = keys[rows]
        if len(np.unique(k)) != len(k):
            raise UpstreamError(
                f"component {step['component']!r}: upstream rows share an id within one shard (or their 64-bit keys collide)"
            )
        n = len(rows)
        for repeat in range(step["passes"]):
            pieces.append(
                pa.table(
                    {
                        "rid": pa.array(rows, pa.int64()),
                        "part": pa.array(np.full(n, len(pieces), np.int32)),
                        "repeat": pa.array(np.full(n, repeat, np.int32)),
                        "whole": pa.array(np.full(n, repeat < step["full_passes"])),
                        "remainder": pa.array(np.full(n, step["remainder"], np.int64)),
                        "last_cap": pa.array(np.full(n, step["last_cap"], np.int64)),
                        "tokens": pa.array(tokens[rows].astype(np.int64)),
                        "order_key": pa.array(mix64(k, _salt(seed, "order", repeat))),
                        "shuffle_key": pa.array(mix64(k, _salt(seed, "shuffle", repeat))),
                        "row_key": pa.array(mix64(k, _salt("row", repeat))),
                    }
                )
            )
    return pa.concat_tables(pieces)


def _sql_list(files: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _text_sources(con, lake: Lake, parts: list[Partition]) -> str:
    """One relation over every kept upstream row the mixture may use: its text and lineage columns."""
    by_component: dict[str, list[str]] = {}
    for p in parts:
        by_component.setdefault(p.component, []).extend(p.files)
    local = isinstance(lake.fs, pafs.LocalFileSystem)
    selects = []
    for i, (label, files) in enumerate(sorted(by_component.items())):
        if not files:
            continue
        if local:
            source = f"read_parquet({_sql_list(files)}, union_by_name = true)"
        else:
            # DuckDB cannot reach S3 here (no httpfs): it scans a pyarrow dataset on the lake's filesystem.
            source = f"mixture_source_{i}"
            con.register(source, pads.dataset(files, filesystem=lake.fs, format="parquet"))
        literal = label.replace("'", "''")
        if label == NATURAL:
            lineage = "id AS seed_id, NULL AS rephrased_id, NULL AS prompt_hash, NULL AS generator"
        else:
            lineage = "source_id AS seed_id, id AS rephrased_id, prompt_hash, generator"
        selects.append(f"SELECT '{literal}' AS component, shard, id, text, {lineage} FROM {source} WHERE kept")
    return " UNION ALL ".join(selects)


def sample(con, index: pa.Table, recipe: Recipe, targets: dict[str, int], available: dict[str, int]) -> None:
    """Create temp table `picked` from `index` (registered as `mixture_index`): the rows (and repeats) to use."""
    con.register("mixture_expanded", expand(index, _plan(recipe, targets, available), recipe.seed))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE picked AS
        WITH ordered AS (
            SELECT *, sum(tokens) OVER (PARTITION BY part ORDER BY order_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
            FROM mixture_expanded
        ), chosen AS (
            SELECT rid, repeat, shuffle_key, row_key FROM ordered
            WHERE whole
               OR (cum <= last_cap AND (cum <= remainder OR (cum - tokens < remainder AND cum - remainder <= remainder - (cum - tokens))))
        )
        SELECT i.component, i.shard, i.id, i.tokens, c.repeat, c.shuffle_key, c.row_key
        FROM chosen c JOIN mixture_index i USING (rid)
        """
    )
    con.unregister("mixture_expanded")


def mixture_rows(con, texts_sql: str, batch_rows: int):
    """The picked rows with their text, in the shuffled order."""
    query = f"""
        WITH texts AS ({texts_sql})
        SELECT lpad(lower(to_hex(p.row_key)), 16, '0') AS id, t.text, p.component, p.id AS source_id, p.shard,
               t.seed_id, t.rephrased_id, p.tokens, p.repeat, t.prompt_hash, t.generator
        FROM picked p JOIN texts t ON t.component = p.component AND t.shard = p.shard AND t.id = p.id
        ORDER BY p.shuffle_key, p.row_key
    """
    relation = con.sql(query)
    # DuckDB 2.0 renamed the Arrow reader; pyproject still admits 1.x.
    reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    return reader(batch_rows)


def fixed_size_tables(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def parquet_bytes(table: pa.Table) -> bytes:
    """zstd at pyarrow's default level, as every other lake file; dictionaries and statistics only
    where they pay off (a dictionary or min/max of document text costs time and saves nothing)."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=["component", "shard", "prompt_hash", "generator"],
        write_statistics=[n for n in table.column_names if n != "text"],
    )
    return sink.getvalue().to_pybytes()


def write_shards(lake: Lake, staging: list[str], tables: Iterator[pa.Table], workers: int = 2) -> dict[str, dict]:
    """`part-<n>.parquet` per table, encoded on `workers` threads (Parquet's zstd writer is serial per file);
    at most `workers` shards are in memory at once."""

    def write(name: str, table: pa.Table) -> dict:
        data = parquet_bytes(table.cast(MIXTURE_SCHEMA))
        lake.put_bytes([*staging, name], data)
        return _entry(data, table.num_rows)

    files: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for i, table in enumerate(tables):
            if len(pending) >= workers:
                name, future = pending.popleft()
                files[name] = future.result()
            name = f"part-{i:05d}.parquet"
            pending.append((name, pool.submit(write, name, table)))
        for name, future in pending:
            files[name] = future.result()
    return dict(sorted(files.items()))


# -- publishing ----------------------------------------------------------------------------------
@dataclass
class Published:
    name: str
    version: str
    identity: str
    reused: bool
    path: str  # lake location of the version directory
    manifest: dict


def _entry(data: bytes, rows: Optional[int] = None) -> dict:
    entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return {**entry, "rows": rows} if rows is not None else entry


def _stats(con) -> dict[str, dict]:
    # A row used k times appears with repeat 0..k-1, so repeat = 0 counts the distinct rows.
    rows = con.execute(
        """
        SELECT component, sum(tokens)::BIGINT, count(*), count(*) FILTER (WHERE repeat = 0), max(repeat) + 1
        FROM picked GROUP BY component ORDER BY component
        """
    ).fetchall()
    return {r[0]: {"tokens": int(r[1]), "rows": r[2], "distinct_rows": r[3], "max_copies": r[4]} for r in rows}


def observe_provenance(tables: Iterator[pa.Table], seen: dict[str, set]) -> Iterator[pa.Table]:
    """Pass tables through, collecting the prompt hashes and generators of the rephrased rows in them."""
    for table in tables:
        for row in table.group_by(["component", "prompt_hash", "generator"]).aggregate([]).to_pylist():
            if row["component"] != NATURAL:
                seen.setdefault(row["component"], set()).add(row["prompt_hash"])
                seen.setdefault("", set()).add(row["generator"])
        yield table


def dataset_card(manifest: dict) -> str:
    name, version = manifest["name"], manifest["version"]
    front = {
        "pretty_name": f"{name} {version}",
        "tags": ["synthetic", "pretraining", "mixture"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "part-*.parquet"}]}],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name} {version}",
        "",
        manifest["recipe"]["description"] or "A pretraining mixture of natural seed documents and rephrased text.",
        "",
        f"{manifest['rows']:,} rows, {manifest['tokens']:,} tokens ({manifest['tokenizer']['name']}), "
        f"budget {manifest['budget_tokens']:,}, seed {manifest['recipe']['seed']}, "
        f"max repetition {manifest['recipe']['max_repetition']:g}.",
        "",
        "| component | weight | tokens | share | rows | repetition |",
        "|---|---|---|---|---|---|",
    ]
    for label, c in manifest["components"].items():
        share = manifest["achieved_shares"][label]
        lines.append(f"| {label} | {c['weight']:.4g} | {c['tokens']:,} | {share:.2%} | {c['rows']:,} | {c['repetition']:.3f} |")
    lines += [
        "",
        "Columns: `id`, `text`, `component` (`natural` or the rephrasing strategy), `source_id` (the seeds or",
        "rephrased row), `shard`, `seed_id`, `rephrased_id`, `tokens`, `repeat` (0 on first use), `prompt_hash`, `generator`.",
        "Every row traces back to its crawl record: `dataset-assets lineage ROW_ID --mixture "
        f"{name}@{version}`. `manifest.json` lists the upstream partitions and their data versions,",
        "prompt hashes, generator, code version and a sha256 per file.",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("path/to/{name}-{version}", split="train")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _clean_unfinished(lake: Lake, name: str, finished: dict[str, dict]) -> None:
    # A version directory without its manifest is debris of an interrupted publish (S3 moves file by file).
    for version in version_dirs(lake, name):
        if version not in finished:
            lake.fs.delete_dir(lake.path(MIXTURES, name, version))


def _move_into_place(lake: Lake, staged: str, final: str, files: list[str]) -> None:
    fs = lake.fs
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        raise FileExistsError(f"{final} appeared while publishing: another build of this mixture runs at the same time")
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        fs.move(staged, final)  # one rename: the version appears whole
        return
    for f in [*files, MANIFEST]:  # the manifest last: until it lands the version reads as unfinished
        fs.move(f"{staged}/{f}", f"{final}/{f}")
    fs.delete_dir(staged)


def _set_latest(lake: Lake, name: str, version: str, identity: str) -> None:
    current = lake.get_json([MIXTURES, name, LATEST]) if lake.exists([MIXTURES, name, LATEST]) else {}
    if current.get("version") != version:
        lake.put_json([MIXTURES, name, LATEST], {"name": name, "version": version, "identity": identity})


@dataclass
class _Inputs:
    """What every variant of one build shares: upstream rows, their token counts and the SQL over them."""

    lake: Lake
    con: object  # DuckDB connection with `mixture_index` registered
    index: pa.Table
    available: dict[str, int]  # tokens per component
    rows: dict[str, int]  # rows per component
    counter: object
    texts_sql: str
    created: str
    excluded: list  # rephrased partitions left out for failing a quality check at ERROR


def _publish_variant(inputs: _Inputs, recipe: Recipe, parts: list[Partition], identity: str) -> Published:
    lake, con, name = inputs.lake, inputs.con, recipe.name
    targets = check_availability(recipe, inputs.available, inputs.rows)
    sample(con, inputs.index, recipe, targets, inputs.available)
    stats = _stats(con)
    finished = finished_versions(lake, name)
    _clean_unfinished(lake, name, finished)
    version = f"v{max((int(v[1:]) for v in finished), default=0) + 1}"
    staging = [STAGING, f"mixture-{uuid.uuid4().hex}"]
    try:
        provenance: dict[str, set] = {}
        tables = fixed_size_tables(mixture_rows(con, inputs.texts_sql, recipe.shard_rows), recipe.shard_rows)
        files = write_shards(lake, staging, observe_provenance(tables, provenance))
        written, picked = sum(f["rows"] for f in files.values()), sum(s["rows"] for s in stats.values())
        if written != picked:
            raise UpstreamError(
                f"mixture {name!r}: {picked:,} rows sampled but {written:,} joined their text: upstream rows share an "
                "id within one shard and component, or upstream files changed during the build"
            )
        manifest = _manifest(inputs, recipe, parts, identity, version, targets, stats, provenance, files)
        card = dataset_card(manifest).encode()
        lake.put_bytes([*staging, CARD], card)
        files[CARD] = _entry(card)
        lake.put_json([*staging, MANIFEST], manifest)  # last: it marks the version finished
        _move_into_place(lake, lake.path(*staging), lake.path(MIXTURES, name, version), sorted(files))
    finally:
        if lake.fs.get_file_info(lake.path(*staging)).type != pafs.FileType.NotFound:
            lake.fs.delete_dir(lake.path(*staging))
    _set_latest(lake, name, version, identity)
    return Published(name, version, identity, False, lake.uri(MIXTURES, name, version), manifest)


def _manifest(inputs: _Inputs, recipe, parts, identity, version, targets, stats, provenance, files) -> dict:
    components = {}
    for c in recipe.components:
        s = stats.get(c.label, {"tokens": 0, "rows": 0, "distinct_rows": 0, "max_copies": 0})
        components[c.label] = {
            "source": c.source,
            "weight": c.weight,
            "target_tokens": targets[c.label],
            **s,
            "available_tokens": inputs.available[c.label],
            "available_rows": inputs.rows[c.label],
            "repetition": s["tokens"] / inputs.available[c.label],  # <= max_repetition; below 1: a subset
        }
    total = sum(c["tokens"] for c in components.values())
    return {
        "name": recipe.name,
        "version": version,
        "identity": identity,
        "recipe": recipe.content(),
        "recipe_file": Path(recipe.path).name if recipe.path else None,
        "variant_of": recipe.variant_of,
        "synthetic_percent": recipe.synthetic_percent,
        "budget_tokens": recipe.budget_tokens,
        "rows": sum(f["rows"] for f in files.values()),
        "tokens": total,
        "components": components,
        "achieved_shares": {k: c["tokens"] / total for k, c in components.items()},
        "repetition": {k: c["repetition"] for k, c in components.items()},
        "upstream": [{"asset": p.asset, "partition": p.key(), "data_version": p.data_version, "files": len(p.files)} for p in parts],
        "excluded_partitions": [e for e in inputs.excluded if e["partition"]["strategy"] in components],
        "prompt_hashes": {k: sorted(v - {None}) for k, v in sorted(provenance.items()) if k},
        "generator": sorted(provenance.get("", set()) - {None}),
        "tokenizer": {"name": inputs.counter.name, "fingerprint": inputs.counter.fingerprint},
        "code_version": CODE_VERSION,
        "created": inputs.created,
        "schema": [{"name": f.name, "type": str(f.type)} for f in MIXTURE_SCHEMA],
        "files": files,
    }


def build_mixtures(lake: Lake, recipe: Recipe, tokenizer=None, log: Optional[Callable[[str], None]] = None) -> list[Published]:
    """Publish the recipe's mixture and each sweep variant, or reuse the version identical inputs made.

    Every variant's availability is checked before anything is written.
    """
    import duckdb

    log = log or (lambda message: None)
    counter = token_counter(tokenizer)
    excluded: list = []
    parts = upstream_partitions(lake, recipe, excluded)
    for e in excluded:
        log(f"{recipe.name}: leaving out rephrased {e['partition']}: failed quality check(s) {sorted(e['failed_checks'])} at ERROR")
    plans = []
    for variant in recipe.variants():
        labels = {c.label for c in variant.components}
        used = [p for p in parts if p.component in labels]
        plans.append((variant, used, mixture_identity(variant, used, counter.fingerprint)))

    results: dict[str, Published] = {}
    for variant, _, identity in plans:
        for version, manifest in finished_versions(lake, variant.name).items():
            if manifest["identity"] == identity:
                _set_latest(lake, variant.name, version, identity)
                path = lake.uri(MIXTURES, variant.name, version)
                results[variant.name] = Published(variant.name, version, identity, True, path, manifest)
                log(f"{variant.name}: inputs unchanged since {version} ({identity}); reusing it")
    todo = [p for p in plans if p[0].name not in results]
    if not todo:
        return [results[v.name] for v, _, _ in plans]

    needed = sorted({p for _, used, _ in todo for p in used}, key=lambda p: (p.component, p.shard))
    log(f"{recipe.name}: token counts for {len(needed)} upstream partitions")
    index = load_index(lake, needed, counter)
    with duckdb.connect() as con:
        # A large mixture's sort spills here rather than into a `.tmp` under the working directory.
        con.execute(f"SET temp_directory = '{Path(tempfile.gettempdir()) / 'duckdb-mixtures'}'")
        con.register("mixture_index", index)
        available, rows = {}, {}
        totals = con.execute("SELECT component, sum(tokens)::BIGINT, count(*) FROM mixture_index GROUP BY 1").fetchall()
        for label, tokens, count in totals:
            available[label], rows[label] = int(tokens), count
        for variant, _, _ in todo:
            check_availability(variant, available, rows)  # all variants before the first write
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        inputs = _Inputs(lake, con, index, available, rows, counter, _text_sources(con, lake, needed), created, excluded)
        for variant, used, identity in todo:
            log(f"{variant.name}: sampling {variant.budget_tokens:,} tokens")
            results[variant.name] = published = _publish_variant(inputs, variant, used, identity)
            log(f"{variant.name}: published {published.version} ({published.manifest['rows']:,} rows)")
    return [results[v.name] for v, _, _ in plans]
