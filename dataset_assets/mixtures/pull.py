"""Reading published mixtures: list versions, pull `name@version` with checksums, open as a Dataset, SQL views."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from dataset_assets import settings
from resources.hashing import stream_sha256
from resources.lake import Lake

MIXTURES = "mixtures"
MANIFEST = "manifest.json"
LATEST = "latest.json"
CARD = "README.md"
LATEST_VERSION = "latest"
_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_MIXTURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class VersionNotFoundError(LookupError):
    """A mixture name or version the lake does not hold; the message lists what it does hold."""


class ChecksumError(IOError):
    """A lake file whose bytes do not match its manifest entry (corrupt or truncated)."""


def parse_spec(spec: str) -> tuple[str, str]:
    """`name` or `name@v3` (or `name@3`, `name@latest`) -> (name, version)."""
    name, _, version = spec.partition("@")
    version = version or LATEST_VERSION
    if version.isdigit():
        version = f"v{version}"
    if not _MIXTURE_NAME.match(name) or ".." in name:
        raise ValueError(f"mixture spec {spec!r}: expected NAME or NAME@VERSION, e.g. demo@v2")
    if version != LATEST_VERSION and not _VERSION.match(version):
        raise ValueError(f"mixture spec {spec!r}: version must be v<number> or latest")
    return name, version


def mixture_names(lake: Lake) -> list[str]:
    return [n for n in lake.subdirectories(MIXTURES) if not n.startswith(("_", "."))]


def version_dirs(lake: Lake, name: str) -> list[str]:
    """Every `v<n>` directory of a mixture in version order, finished or not."""
    found = [(int(m.group(1)), d) for d in lake.subdirectories(MIXTURES, name) if (m := _VERSION.match(d))]
    return [d for _, d in sorted(found)]


def finished_versions(lake: Lake, name: str) -> dict[str, dict]:
    """version -> manifest for every version whose manifest landed (it is written last)."""
    out = {}
    for version in version_dirs(lake, name):
        if lake.exists([MIXTURES, name, version, MANIFEST]):
            out[version] = lake.get_json([MIXTURES, name, version, MANIFEST])
    return out


def latest_version(lake: Lake, name: str) -> Optional[str]:
    if lake.exists([MIXTURES, name, LATEST]):
        return lake.get_json([MIXTURES, name, LATEST])["version"]
    return None


def resolve(lake: Lake, spec: str) -> tuple[str, str, dict]:
    """(name, version, manifest) of a finished version; VersionNotFoundError names what exists."""
    name, version = parse_spec(spec)
    versions = finished_versions(lake, name)
    if not versions:
        known = ", ".join(mixture_names(lake)) or "none"
        raise VersionNotFoundError(
            f"no published mixture named {name!r} in {lake.uri(MIXTURES)}; mixtures there: {known}"
        )
    if version == LATEST_VERSION:
        version = latest_version(lake, name) or list(versions)[-1]
    if version not in versions:
        raise VersionNotFoundError(
            f"mixture {name!r} has no version {version}; published versions: {', '.join(versions)}"
        )
    return name, version, versions[version]


def parquet_files(manifest: dict) -> list[str]:
    return sorted(f for f in manifest["files"] if f.endswith(".parquet"))


def list_versions(lake: Lake, name: str) -> list[dict]:
    """One row per finished version: version, created, rows, tokens, bytes, achieved_shares, latest."""
    versions = finished_versions(lake, name)
    if not versions:
        resolve(lake, name)  # raises the not-found error with the list of mixtures
    latest = latest_version(lake, name) or list(versions)[-1]
    return [
        {
            "version": version,
            "created": m["created"],
            "rows": m["rows"],
            "tokens": m["tokens"],
            "bytes": sum(m["files"][f]["bytes"] for f in parquet_files(m)),
            "achieved_shares": m["achieved_shares"],
            "latest": version == latest,
        }
        for version, m in versions.items()
    ]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def format_versions(name: str, rows: list[dict]) -> str:
    header = ("version", "created", "rows", "tokens", "size", "token shares")
    lines = [header]
    for r in rows:
        shares = ", ".join(f"{k} {v:.1%}" for k, v in sorted(r["achieved_shares"].items(), key=lambda kv: -kv[1]))
        version = r["version"] + (" *" if r["latest"] else "")
        lines.append((version, r["created"], f"{r['rows']:,}", f"{r['tokens']:,}", _size(r["bytes"]), shares))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in lines)
    return f"mixture {name} (* = latest)\n{text}"


def file_sha256(fs: pafs.FileSystem, path: str) -> tuple[str, int]:
    """(sha256 hex, bytes) of a lake file."""
    with fs.open_input_stream(path) as stream:
        return stream_sha256(stream)


def _copy_verified(lake: Lake, src: str, dst: Path, expected: dict, label: str) -> None:
    h, size = hashlib.sha256(), 0
    try:
        with lake.fs.open_input_stream(src) as f, open(dst, "wb") as out:
            while chunk := f.read(1 << 22):
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except FileNotFoundError as exc:
        raise ChecksumError(f"{label}: {src} is listed in the manifest but missing from the lake") from exc
    if h.hexdigest() != expected["sha256"] or size != expected["bytes"]:
        cut = " (truncated)" if size < expected["bytes"] else ""
        raise ChecksumError(
            f"{label}: {Path(src).name} in the lake is corrupt{cut}: {size:,} bytes with sha256 "
            f"{h.hexdigest()[:16]}..., "
            f"the manifest says {expected['bytes']:,} bytes with sha256 {expected['sha256'][:16]}...; "
            "nothing was written to the destination; republish the version or restore the file"
        )


def pull(lake: Lake, spec: str, dest: str | os.PathLike) -> Path:
    """Copy a version into `dest` (a new directory), verifying every file's sha256 against the manifest.

    Files land in a temporary directory beside `dest` that is renamed into place only after every
    checksum matched, so a failed pull leaves `dest` as it was.
    """
    name, version, manifest = resolve(lake, spec)
    dest = Path(dest).expanduser().resolve()
    if dest.exists():
        there = dest / MANIFEST
        if there.is_file() and json.loads(there.read_text()).get("identity") == manifest["identity"]:
            return dest  # versions are immutable: the same identity is the same bytes
        if not dest.is_dir() or any(dest.iterdir()):
            raise FileExistsError(
                f"pull {name}@{version}: destination {dest} exists and is not empty; choose a new directory"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        for file_name, expected in sorted(manifest["files"].items()):
            _copy_verified(
                lake, lake.path(MIXTURES, name, version, file_name), partial / file_name, expected, f"{name}@{version}"
            )
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return dest


def default_lake() -> Lake:
    """The lake outside Dagster (a training job): the same root and S3 location as the code location's
    `lake` resource (`defs/resources.py: lake_resource`); credentials come from the usual AWS
    environment variables through pyarrow's own lookup, as no Dagster EnvVar resolves here."""
    return Lake(root=settings.lake_root(), **settings.s3_location())


def default_cache_dir() -> Path:
    return settings.mixture_cache_dir()


def load_mixture(
    name: str,
    version: str = LATEST_VERSION,
    lake: Optional[Lake] = None,
    streaming: bool = False,
    cache_dir: Optional[str] = None,
):
    """A published mixture as a `datasets.Dataset` (an `IterableDataset` when streaming).

    A local lake is read in place; a remote one is pulled (checksums verified) into
    `cache_dir/<name>/<version>` first, once: versions never change.
    """
    import datasets

    lake = lake or default_lake()
    name, version, manifest = resolve(lake, f"{name}@{version}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if isinstance(lake.fs, pafs.LocalFileSystem):
        directory = Path(lake.path(MIXTURES, name, version))
    else:
        directory = pull(lake, f"{name}@{version}", cache / name / version)
    files = [str(directory / f) for f in parquet_files(manifest)]
    return datasets.load_dataset(
        "parquet", data_files={"train": files}, split="train", streaming=streaming, cache_dir=str(cache / "hf")
    )


def duckdb_views(lake: Lake, con=None):
    """A DuckDB connection with views `crawl_docs`, `seeds`, `rephrased` and `mixtures` over the lake.

    DuckDB scans pyarrow datasets (so an S3 lake works without DuckDB's httpfs); `mixtures` holds
    every finished version's rows with `name` and `version` columns. Assets with no data get no view.
    """
    import duckdb

    con = con or duckdb.connect()
    for asset in ("crawl_docs", "seeds", "rephrased"):
        files = lake.all_part_files(asset)
        if files:
            # Rows carry their shard/strategy columns already: no Hive partitioning needed.
            con.register(asset, pads.dataset(files, filesystem=lake.fs, format="parquet"))
    files = []
    for name in mixture_names(lake):
        for version, manifest in finished_versions(lake, name).items():
            files += [lake.path(MIXTURES, name, version, f) for f in parquet_files(manifest)]
    if files:
        partitioning = pads.DirectoryPartitioning(pa.schema([("name", pa.string()), ("version", pa.string())]))
        dataset = pads.dataset(
            files,
            filesystem=lake.fs,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=lake.path(MIXTURES),
        )
        con.register(MIXTURES, dataset)
    return con


def cmd_versions(lake: Lake, name: str) -> str:
    """`dataset-assets versions NAME`."""
    return format_versions(name, list_versions(lake, name))


def cmd_pull(lake: Lake, spec: str, dest: str) -> str:
    """`dataset-assets pull NAME[@VERSION] DEST`."""
    name, version, manifest = resolve(lake, spec)
    path = pull(lake, f"{name}@{version}", dest)
    files = parquet_files(manifest)
    size = sum(manifest["files"][f]["bytes"] for f in files)
    return (
        f"pulled {name}@{version} to {path}: {len(files)} Parquet files, {manifest['rows']:,} rows, "
        f"{manifest['tokens']:,} tokens, {_size(size)}; sha256 of every file verified"
    )
