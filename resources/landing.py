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
        if any(part.startswith((".", "_")) for part in rel.split("/")) or rel.lower().endswith(_IGNORED_SUFFIXES):
            return None
        return rel

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
