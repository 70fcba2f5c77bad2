"""Where crawl shard files arrive: a local directory or an S3 prefix, listed and opened by shard key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Optional

import pyarrow.fs as pafs
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.lake import open_filesystem
from resources.paths import sanitise_shard_key

_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".incomplete")


def _is_shard_path(rel: str) -> bool:
    """Not hidden (no part starting with . or _) and not still being written (.tmp, .part, ...)."""
    return not any(part.startswith((".", "_")) for part in rel.split("/")) and not rel.lower().endswith(
        _IGNORED_SUFFIXES
    )


@dataclass(frozen=True)
class LandingFile:
    key: str  # the sanitised shard key (a crawl_shards partition)
    path: str  # path inside the landing filesystem
    name: str  # path relative to the landing root, as the user sees it
    size: int


class CrawlLanding(ConfigurableResource):
    """The landing location and how to read JSONL/Parquet shards in it."""

    location: str
    s3_endpoint_url: Optional[str] = None
    aws_access_key_id: Optional[str] = None  # dagster.EnvVar only
    aws_secret_access_key: Optional[str] = None
    aws_region: Optional[str] = None
    text_fields: list[str] = ["text", "content", "raw_content"]  # first present field holds the text
    url_fields: list[str] = ["url", "metadata.url", "warc_url"]
    id_fields: list[str] = ["id", "doc_id", "metadata.warc_record_id"]

    _fs: Optional[pafs.FileSystem] = PrivateAttr(default=None)
    _base: str = PrivateAttr(default="")

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            self._fs, self._base = open_filesystem(
                self.location, self.s3_endpoint_url, self.aws_access_key_id, self.aws_secret_access_key, self.aws_region
            )
        return self._fs

    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def _relative(self, info: pafs.FileInfo) -> Optional[str]:
        """The file's path under the landing root, or None for what is not a shard file (a directory,
        a hidden file, a file still being written)."""
        if info.type != pafs.FileType.File:
            return None
        base = self._base.rstrip("/") + "/"
        rel = info.path[len(base) :] if info.path.startswith(base) else info.base_name
        return rel if _is_shard_path(rel) else None

    def files(self) -> dict[str, LandingFile]:
        """Every shard file by key. Hidden files and files still being written (.tmp, .part) are left out."""
        fs = self.fs
        infos = fs.get_file_info(pafs.FileSelector(self._base, recursive=True, allow_not_found=True))
        found: dict[str, LandingFile] = {}
        for info in sorted(infos, key=lambda i: i.path):
            rel = self._relative(info)
            if rel is None:
                continue
            key = sanitise_shard_key(rel)
            if key in found:
                raise ValueError(
                    f"landing files {found[key].name!r} and {rel!r} both map to shard key {key!r}; rename one of them"
                )
            found[key] = LandingFile(key=key, path=info.path, name=rel, size=info.size or 0)
        return found

    def files_after(
        self, after: Optional[str], limit: int, listed: Optional[dict[str, LandingFile]] = None
    ) -> tuple[list[LandingFile], Optional[str]]:
        """At most `limit` shard files whose path under the landing sorts after `after`, in path
        order, and the last path listed (the next call's `after`; None when nothing was listed).

        On S3 this is `list_objects_v2` with `StartAfter` through dagster-aws's `S3Resource`: a
        call lists only keys after the cursor, about one request per 1,000 keys, whatever the
        landing holds. A local folder is listed whole and filtered (cheap on one disk), or `listed`
        (that whole listing, already made by the caller) is filtered."""
        if self.location.startswith("s3://"):
            return self._s3_files_after(after, limit)
        ordered = sorted((listed if listed is not None else self.files()).values(), key=lambda f: f.name)
        chosen = [f for f in ordered if after is None or f.name > after][:limit]
        return chosen, (chosen[-1].name if chosen else None)

    def _s3_files_after(self, after: Optional[str], limit: int) -> tuple[list[LandingFile], Optional[str]]:
        from dagster_aws.s3 import S3Resource

        client = S3Resource(
            endpoint_url=self.s3_endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            region_name=self.aws_region or "us-east-1",
        ).get_client()
        bucket, _, prefix = self.location[len("s3://") :].strip("/").partition("/")
        prefix = prefix + "/" if prefix else ""
        kwargs = {"Bucket": bucket, "Prefix": prefix, **({"StartAfter": prefix + after} if after else {})}
        chosen: list[LandingFile] = []
        last = None
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs, PaginationConfig={"PageSize": 1000}):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                last = rel
                if not rel or rel.endswith("/") or not _is_shard_path(rel):
                    continue
                chosen.append(
                    LandingFile(
                        key=sanitise_shard_key(rel), path=f"{bucket}/{obj['Key']}", name=rel, size=obj.get("Size", 0)
                    )
                )
                if len(chosen) >= limit:
                    return chosen, last
        return chosen, last

    def file(self, key: str) -> LandingFile:
        """The landing file of a shard key: one lookup when the file sits at the landing root under its
        own name (the usual case), a listing only for keys made from sub-directory paths."""
        info = self.fs.get_file_info(self._base.rstrip("/") + "/" + key)
        rel = self._relative(info)
        if rel is not None and sanitise_shard_key(rel) == key:
            return LandingFile(key=key, path=info.path, name=rel, size=info.size or 0)
        files = self.files()
        if key not in files:
            raise FileNotFoundError(
                f"shard {key!r} has no file in the landing location {self.location!r} "
                f"(it holds {len(files)} shard files); was it moved or is CRAWL_LANDING pointing elsewhere?"
            )
        return files[key]

    def open(self, f: LandingFile) -> IO[bytes]:
        return self.fs.open_input_file(f.path)
