"""A published mixture version as token shards, the layout trainers memory-map: flat little-endian
`uint16` (or `uint32` for vocabularies over 65,536) arrays, an end-of-document token after every
document, plus a manifest of token counts and sha256 checksums. OLMo-core's numpy datasets and
nanoGPT-style loaders read them with `np.memmap(path, dtype=manifest["dtype"], mode="r")`.

Deterministic for a (mixture version, tokenizer) pair: rows are read in the version's file order,
and rows that share a 13-gram with an evaluation set are left out first (`decontaminate.py`),
counted in the manifest and the folder's card.

Layout: `<lake>/mixture_tokens/mixture=<name>/version=<v>/tokenizer=<key>/part-00000.bin ...,
manifest.json, README.md` (the manifest is written last: a folder without it is unfinished).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow.parquet as pq

from dataset_assets.mixtures.pull import MIXTURES, parquet_files, resolve
from dataset_assets.proxy.spec import BYTES

ASSET = "mixture_tokens"
MANIFEST = "manifest.json"
CARD = "README.md"
CODE_VERSION = "1"
SHARD_TOKENS = 1 << 26  # tokens per part file (128 MiB of uint16)
ROW_BATCH = 512


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, end of document 256: tokenizer-free, so bits per byte is exact."""

    name = BYTES
    fingerprint = "utf8-bytes-eos256"
    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]


class WrappedTokenizer:
    """A tokenizer.json (or .tiktoken) through the project's one wrapper, with an end-of-document id
    appended after its vocabulary."""

    def __init__(self, path: str):
        from resources.tokenizer import load_tokenizer

        self._tok = load_tokenizer(path)
        self.name, self.fingerprint = self._tok.name, self._tok.fingerprint
        self.eos_id = self._tok.vocab_size
        self.vocab_size = self._tok.vocab_size + 1

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int64) for ids in self._tok.encode_batch(texts)]


def load_tokenizer(name: str, gpt2_path: str = ""):
    """`bytes`, `gpt2` (the GPT-2 tokenizer.json the project counts mixtures with) or a path."""
    if name == BYTES:
        return ByteTokenizer()
    return WrappedTokenizer(gpt2_path if name == "gpt2" else name)


def tokenizer_key(name: str) -> str:
    """The partition key of a tokenizer: `bytes`, `gpt2`, or a path's file name without suffixes."""
    if name in (BYTES, "gpt2"):
        return name
    stem = Path(name).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:40] or "tokenizer"


def dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def folder(name: str, version: str, key: str) -> list[str]:
    return [ASSET, f"mixture={name}", f"version={version}", f"tokenizer={key}"]


@dataclass
class TokenizedVersion:
    manifest: dict
    parts: list[str]  # lake paths of the part files


def _rows(lake, name: str, version: str, manifest: dict) -> Iterator[dict]:
    for file_name in parquet_files(manifest):
        path = lake.path(MIXTURES, name, version, file_name)
        parquet = pq.ParquetFile(lake.fs.open_input_file(path))
        for batch in parquet.iter_batches(columns=["id", "text", "component"], batch_size=ROW_BATCH):
            yield from batch.to_pylist()


def tokenize_version(
    lake,
    spec: str,
    tokenizer,
    key: str,
    contaminated: Callable[[str], bool],
    eval_sets: list[str],
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> TokenizedVersion:
    """Write `spec`'s (name@version) token shards and manifest; rows `contaminated` judges True are
    left out and counted. `on_progress(rows read, tokens written)` after each batch of rows."""
    name, version, mixture_manifest = resolve(lake, spec)
    dtype = np.dtype(dtype_for(tokenizer.vocab_size)).newbyteorder("<")
    removed: Counter = Counter()
    rows = documents = 0
    parts, files = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        writer = _PartWriter(tmp, dtype)
        batch: list[dict] = []
        for row in _rows(lake, name, version, mixture_manifest):
            rows += 1
            if contaminated(row["text"]):
                removed[row["component"]] += 1
                continue
            batch.append(row)
            if len(batch) >= ROW_BATCH:
                documents += writer.add(tokenizer, batch)
                batch = []
                if on_progress:
                    on_progress(rows, writer.total)
        documents += writer.add(tokenizer, batch)
        for local in writer.close():
            target = [*folder(name, version, key), Path(local).name]
            lake.put_file(target, local)
            parts.append(lake.path(*target))
            files[Path(local).name] = {"tokens": writer.counts[local], "sha256": _sha256(local)}
    manifest = {
        "mixture": name,
        "version": version,
        "mixture_manifest_sha256": hashlib.sha256(json.dumps(mixture_manifest, sort_keys=True).encode()).hexdigest(),
        "tokenizer": {"name": tokenizer.name, "key": key, "fingerprint": tokenizer.fingerprint},
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "dtype": str(np.dtype(dtype_for(tokenizer.vocab_size))),
        "byte_order": "little",
        "documents": documents,
        "tokens": writer.total,
        "files": files,
        "decontamination": {"eval_sets": eval_sets, "ngram": 13, "rows_read": rows, "removed": dict(removed)},
        "code_version": CODE_VERSION,
    }
    lake.put_bytes([*folder(name, version, key), CARD], card(manifest).encode())
    lake.put_json([*folder(name, version, key), MANIFEST], manifest)  # last: the folder is finished
    return TokenizedVersion(manifest, parts)


class _PartWriter:
    """Documents appended to part files of at most SHARD_TOKENS tokens (a document may span two)."""

    def __init__(self, directory: str, dtype: np.dtype):
        self.directory, self.dtype = directory, dtype
        self.paths: list[str] = []
        self.counts: dict[str, int] = {}
        self.total = 0
        self._handle = None

    def _open(self) -> None:
        path = os.path.join(self.directory, f"part-{len(self.paths):05d}.bin")
        self.paths.append(path)
        self.counts[path] = 0
        self._handle = open(path, "wb")

    def add(self, tokenizer, rows: list[dict]) -> int:
        if not rows:
            return 0
        for ids in tokenizer.encode_batch([r["text"] for r in rows]):
            tokens = np.append(ids, tokenizer.eos_id).astype(self.dtype)
            while len(tokens):
                if self._handle is None or self.counts[self.paths[-1]] >= SHARD_TOKENS:
                    if self._handle is not None:
                        self._handle.close()
                    self._open()
                room = SHARD_TOKENS - self.counts[self.paths[-1]]
                piece, tokens = tokens[:room], tokens[room:]
                self._handle.write(piece.tobytes())
                self.counts[self.paths[-1]] += len(piece)
                self.total += len(piece)
        return len(rows)

    def close(self) -> list[str]:
        if self._handle is None:
            self._open()  # an empty version still has one (empty) part file
        self._handle.close()
        return self.paths


def _sha256(path: str) -> str:
    from resources.hashing import file_sha256

    return file_sha256(Path(path))


def card(manifest: dict) -> str:
    d = manifest["decontamination"]
    removed = ", ".join(f"{k} {v}" for k, v in sorted(d["removed"].items())) or "none"
    return (
        f"# {manifest['mixture']}@{manifest['version']} as {manifest['tokenizer']['name']} "
        f"tokens\n\n{manifest['tokens']:,} tokens in {manifest['documents']:,} documents, {len(manifest['files'])} "
        f"part file(s) of flat little-endian `{manifest['dtype']}`, end-of-document id {manifest['eos_id']} after "
        f"every document (vocabulary {manifest['vocab_size']:,}). Read with `np.memmap(path, "
        f"dtype='{manifest['dtype']}', mode='r')`.\n\nDecontamination: rows sharing a {d['ngram']}-gram (or a whole "
        f"short sentence) with an evaluation set were left out before tokenizing: {sum(d['removed'].values())} of "
        f"{d['rows_read']} rows ({removed}). Evaluation sets checked: {', '.join(d['eval_sets']) or 'none'}.\n"
    )


def read_manifest(lake, name: str, version: str, key: str) -> Optional[dict]:
    parts = [*folder(name, version, key), MANIFEST]
    return lake.get_json(parts) if lake.exists(parts) else None


def load_tokens(lake, manifest: dict, local_dir: str) -> np.ndarray:
    """The version's tokens as one array (downloaded from the lake, checksums verified)."""
    arrays = []
    os.makedirs(local_dir, exist_ok=True)
    for file_name, entry in sorted(manifest["files"].items()):
        parts = [*folder(manifest["mixture"], manifest["version"], manifest["tokenizer"]["key"]), file_name]
        local = lake.download(parts, os.path.join(local_dir, file_name))
        if _sha256(local) != entry["sha256"]:
            raise IOError(f"{lake.uri(*parts)}: sha256 differs from the manifest: the token file is corrupt")
        arrays.append(np.fromfile(local, dtype=np.dtype(manifest["dtype"]).newbyteorder("<")))
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=manifest["dtype"])


def pull_tokens(lake, spec: str, key: str, dest: str) -> str:
    """Copy a version's token shards (`key`: the tokenizer, e.g. bytes) to `dest`, checksums verified;
    FileNotFoundError when that version was never tokenized with it."""
    name, version, _ = resolve(lake, spec)
    manifest = read_manifest(lake, name, version, key)
    if manifest is None:
        raise FileNotFoundError(
            f"{name}@{version} has no {key} tokens in {lake.uri(ASSET)}: materialise mixture_tokens for it "
            "(dataset-assets evaluate, or the asset in the UI)"
        )
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    load = load_tokens(lake, manifest, str(target))  # downloads and verifies every part file
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (target / CARD).write_text(card(manifest))
    return f"pulled {name}@{version} as {key} tokens ({len(load):,} tokens, {len(manifest['files'])} files) to {target}"
