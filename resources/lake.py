"""The lake: Hive-partitioned Parquet under one root (local path or s3://), written atomically.

Every write goes to `<root>/_staging/<uuid>/...` first and is then moved onto its final name, so a
killed run leaves only staging debris, never a file under an asset that looks finished. On S3 the
move is a server-side copy, which is atomic per object.

This module is longer than 300 lines because it is the one class every stage reads and writes the
lake through (paths, atomic writes, partition listings, JSON and bytes); splitting it would give
the stages two doors to the same files.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Optional

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.paths import check_partition_value

STAGING = "_staging"
COMPRESSION = "zstd"


@dataclass(frozen=True)
class WrittenFile:
    """What a write produced: where, how much, and a content hash usable as a Dagster DataVersion."""

    path: str
    rows: int
    bytes: int
    data_version: str


def open_filesystem(
    uri: str,
    endpoint_url: Optional[str] = None,
    access_key: Optional[str] = None,
    secret_key: Optional[str] = None,
    region: Optional[str] = None,
) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for a local path or an s3:// URI."""
    if uri.startswith("s3://"):
        bucket_and_prefix = uri[len("s3://") :].strip("/")
        kwargs: dict = {"region": region or "us-east-1"}
        if endpoint_url:
            scheme, _, host = endpoint_url.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
            kwargs["allow_bucket_creation"] = True
        if access_key and secret_key:
            kwargs.update(access_key=access_key, secret_key=secret_key)
        # Fail fast on a dead endpoint instead of pyarrow's default of ~minutes of retries.
        kwargs["retry_strategy"] = pafs.AwsDefaultS3RetryStrategy(max_attempts=3)
        kwargs["connect_timeout"] = 5
        kwargs["request_timeout"] = 30
        return pafs.S3FileSystem(**kwargs), bucket_and_prefix
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"lake/landing location {uri!r}: only local paths and s3:// URIs are supported")
    local = uri[len("file://") :] if uri.startswith("file://") else uri
    import os

    return pafs.LocalFileSystem(), os.path.abspath(local)


class Lake(ConfigurableResource):
    """Parquet lake over pyarrow filesystems. `root` is a local directory or `s3://bucket/prefix`."""

    root: str
    s3_endpoint_url: Optional[str] = None  # e.g. http://127.0.0.1:5000 for moto_server
    aws_access_key_id: Optional[str] = None  # pass dagster.EnvVar("AWS_ACCESS_KEY_ID"), never a literal
    aws_secret_access_key: Optional[str] = None
    aws_region: Optional[str] = None

    _fs: Optional[pafs.FileSystem] = PrivateAttr(default=None)
    _base: str = PrivateAttr(default="")

    # -- locations -------------------------------------------------------------------------------
    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            self._fs, self._base = open_filesystem(
                self.root,
                self.s3_endpoint_url,
                self.aws_access_key_id,
                self.aws_secret_access_key,
                self.aws_region,
            )
            if isinstance(self._fs, pafs.LocalFileSystem):
                self._fs.create_dir(self._base, recursive=True)
            elif self.s3_endpoint_url:
                # A private endpoint (moto, MinIO): create the bucket if it is missing. Against AWS
                # itself the bucket must exist; a missing one is a clear error on first write.
                bucket = self._base.split("/", 1)[0]
                if self._fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                    self._fs.create_dir(bucket)
        return self._fs

    def path(self, *parts: str) -> str:
        """Path inside the filesystem for `parts` below the lake root."""
        _ = self.fs
        return "/".join([self._base.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def uri(self, *parts: str) -> str:
        """Human-readable location (s3://... or an absolute path) for metadata and messages."""
        p = self.path(*parts)
        return f"s3://{p}" if isinstance(self.fs, pafs.S3FileSystem) else p

    @staticmethod
    def partition_parts(asset: str, partition: Mapping[str, str]) -> list[str]:
        return [asset, *[f"{k}={check_partition_value(k, v)}" for k, v in partition.items()]]

    def partition_path(self, asset: str, partition: Mapping[str, str]) -> str:
        return self.path(*self.partition_parts(asset, partition))

    # -- atomic writes ---------------------------------------------------------------------------
    def _staging_path(self, name: str) -> str:
        return self.path(STAGING, uuid.uuid4().hex, name)

    def _mkdir(self, path: str) -> None:
        # Object stores have no directories; creating one there only leaves a marker object behind.
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(path, recursive=True)

    def _commit(self, staged: str, final: str) -> None:
        fs = self.fs
        self._mkdir(final.rsplit("/", 1)[0])
        fs.move(staged, final)
        # Remove the now-empty staging directory so _staging does not grow without bound (on S3,
        # Arrow leaves a marker object for it when the staged file is moved away).
        try:
            fs.delete_dir(staged.rsplit("/", 1)[0])
        except OSError:
            pass

    def write_parquet(
        self,
        final_path: str,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> WrittenFile:
        """Stream record batches into one zstd Parquet file, then move it onto `final_path`."""
        if metadata:
            schema = schema.with_metadata({**(schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})
        staged = self._staging_path(final_path.rsplit("/", 1)[-1])
        h = hashlib.sha256()
        rows = 0
        self._mkdir(staged.rsplit("/", 1)[0])
        try:
            with self.fs.open_output_stream(staged) as sink:
                with pq.ParquetWriter(sink, schema, compression=COMPRESSION) as writer:
                    for batch in batches:
                        if batch.num_rows == 0:
                            continue
                        batch = batch.cast(schema) if batch.schema != schema else batch
                        writer.write_batch(batch)
                        h.update(batch.serialize().to_pybytes())
                        rows += batch.num_rows
            size = self.fs.get_file_info(staged).size
            self._commit(staged, final_path)
        except BaseException:
            self._discard(staged)
            raise
        return WrittenFile(final_path, rows, size or 0, h.hexdigest()[:16])

    def _discard(self, staged: str) -> None:
        # The file, then its staging folder (on S3, deleting the file leaves a folder marker behind).
        for remove, path in ((self.fs.delete_file, staged), (self.fs.delete_dir, staged.rsplit("/", 1)[0])):
            try:
                remove(path)
            except (OSError, FileNotFoundError):
                pass

    def write_partition(
        self,
        asset: str,
        partition: Mapping[str, str],
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> WrittenFile:
        """Replace a whole partition with one file; stale part files from earlier writes are removed."""
        directory = self.partition_path(asset, partition)
        final = f"{directory}/part-00000.parquet"
        written = self.write_parquet(final, batches, schema, metadata)
        for info in self._list(directory):
            if info.path != final and info.base_name.startswith("part-"):
                self.fs.delete_file(info.path)
        return written

    def put_bytes(self, path_parts: list[str], data: bytes) -> str:
        final = self.path(*path_parts)
        staged = self._staging_path(final.rsplit("/", 1)[-1])
        self._mkdir(staged.rsplit("/", 1)[0])
        try:
            with self.fs.open_output_stream(staged) as out:
                out.write(data)
            self._commit(staged, final)
        except BaseException:
            self._discard(staged)
            raise
        return final

    def put_file(self, path_parts: list[str], local_file: str) -> str:
        with open(local_file, "rb") as f:
            return self.put_bytes(path_parts, f.read())

    def put_json(self, path_parts: list[str], obj) -> str:
        return self.put_bytes(path_parts, json.dumps(obj, indent=2, sort_keys=True).encode())

    # -- reads -----------------------------------------------------------------------------------
    def get_bytes(self, path_parts: list[str]) -> bytes:
        with self.fs.open_input_stream(self.path(*path_parts)) as f:
            return f.read()

    def get_json(self, path_parts: list[str]):
        return json.loads(self.get_bytes(path_parts))

    def exists(self, path_parts: list[str]) -> bool:
        return self.fs.get_file_info(self.path(*path_parts)).type != pafs.FileType.NotFound

    def _list(self, directory: str) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return [i for i in infos if i.type == pafs.FileType.File]

    def parquet_files(self, *parts: str) -> list[str]:
        """Every .parquet file directly in a lake folder, in name order (none when the folder does not exist)."""
        return sorted(i.path for i in self._list(self.path(*parts)) if i.base_name.endswith(".parquet"))

    def partition_files(self, asset: str, partition: Mapping[str, str]) -> list[str]:
        return sorted(
            i.path
            for i in self._list(self.partition_path(asset, partition))
            if i.base_name.startswith("part-") and i.base_name.endswith(".parquet")
        )

    def partition_rows(self, asset: str, partition: Mapping[str, str]) -> int:
        """Rows of a partition, from its part files' footers (no data read)."""
        rows = 0
        for f in self.partition_files(asset, partition):
            with self.fs.open_input_file(f) as src:
                rows += pq.ParquetFile(src).metadata.num_rows
        return rows

    def has_partition(self, asset: str, partition: Mapping[str, str]) -> bool:
        return bool(self.partition_files(asset, partition))

    def partition_values(self, asset: str, key: str) -> list[str]:
        """Values of the first Hive key under an asset that hold at least one finished part file."""
        values = [d[len(key) + 1 :] for d in self.subdirectories(asset, prefix=f"{key}=")]
        return [v for v in values if self.has_partition(asset, {key: v})]

    def subdirectories(self, *parts: str, prefix: str = "") -> list[str]:
        """Names of the directories directly under a lake path (starting with `prefix`), sorted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(*parts), allow_not_found=True))
        return sorted(
            i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix)
        )

    def all_part_files(self, asset: str) -> list[str]:
        """Every finished part file of an asset, at any depth, sorted."""
        selector = pafs.FileSelector(self.path(asset), recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File and i.base_name.startswith("part-") and i.base_name.endswith(".parquet")
        )

    def stored_partitions(self, asset: str) -> list[dict[str, str]]:
        """Hive keys of every partition of an asset holding a finished part file, at any depth."""
        base = self.path(asset)
        found: dict[tuple, dict[str, str]] = {}
        for path in self.all_part_files(asset):
            directories = path[len(base) :].strip("/").split("/")[:-1]
            if directories and all("=" in d for d in directories):
                keys = dict(d.split("=", 1) for d in directories)
                found[tuple(keys.items())] = keys
        return [found[k] for k in sorted(found)]

    def read_partition(self, asset: str, partition: Mapping[str, str], columns: Optional[list[str]] = None) -> pa.Table:
        files = self.partition_files(asset, partition)
        if not files:
            raise FileNotFoundError(
                f"no finished data for {asset} partition {dict(partition)} at "
                f"{self.uri(*self.partition_parts(asset, partition))}; "
                "materialise it first"
            )
        return pa.concat_tables(pq.read_table(f, columns=columns, filesystem=self.fs) for f in files)

    def iter_partition_batches(
        self, asset: str, partition: Mapping[str, str], columns: Optional[list[str]] = None, batch_size: int = 4096
    ) -> Iterator[pa.RecordBatch]:
        for f in self.partition_files(asset, partition):
            pf = pq.ParquetFile(self.fs.open_input_file(f))
            yield from pf.iter_batches(batch_size=batch_size, columns=columns)

    def dataset(self, asset: str) -> pads.Dataset:
        """A pyarrow dataset over every finished part file of an asset (Hive partition columns added)."""
        return pads.dataset(
            self.path(asset),
            filesystem=self.fs,
            format="parquet",
            partitioning="hive",
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )

    def download(self, path_parts: list[str], local_file: str) -> str:
        with self.fs.open_input_stream(self.path(*path_parts)) as src, open(local_file, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        return local_file
