"""Crawl shard readers: WARC/WET (`warc.py`), JSONL (plain, gzip, zstd; `jsonl.py`) and Parquet (here) to
raw records, and what every reader shares: the record types, the read report and the format of a file name.

A reader yields `RawRecord`s and `Skipped(reason)`s and never raises on damaged input: a broken
compressed stream ends the shard early and is written into the `ReadReport`, keeping every record
read before the break.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Optional, Union

WARC_SUFFIXES = (".warc", ".warc.gz", ".warc.zst", ".warc.lz4", ".wet", ".wet.gz", ".warc.wet.gz")
JSONL_SUFFIXES = (".jsonl", ".json", ".json.gz", ".jsonl.gz", ".zst", ".json.zst", ".jsonl.zst")
PARQUET_SUFFIXES = (".parquet",)
ACCEPTED = "WARC/WET (" + ", ".join(WARC_SUFFIXES) + "), JSONL (" + ", ".join(JSONL_SUFFIXES) + "), Parquet (.parquet)"

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml", "text/plain")
_CRAWL_NAME = re.compile(r"(CC-MAIN-\d{4}-\d{2})", re.IGNORECASE)


class UnsupportedShardError(ValueError):
    """The landing file is not a crawl shard this project can read."""


@dataclass
class RawRecord:
    key: str  # identifies the record inside its shard (WARC-Record-ID, the JSON id, or the row number)
    payload: Union[bytes, str]  # HTML bytes (kind "html") or text (kind "text")
    kind: str
    url: Optional[str] = None
    charset: Optional[str] = None
    offset: Optional[int] = None  # byte offset of the WARC record in the (compressed) file, or the row number
    date: Optional[str] = None
    warc_record_id: Optional[str] = None


@dataclass
class Skipped:
    reason: str


@dataclass
class ReadReport:
    format: str = ""
    records: int = 0
    truncated: bool = False
    error: Optional[str] = None
    crawl: Optional[str] = None
    position: int = 0  # bytes of the (compressed) file read so far, for progress and ETA

    def broke(self, exc: BaseException) -> None:
        self.truncated = True
        self.error = f"{type(exc).__name__}: {exc}"


def shard_format(name: str) -> str:
    lower = name.lower()
    if lower.endswith(WARC_SUFFIXES):
        return "warc"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise UnsupportedShardError(f"{name}: not a crawl shard. Accepted formats: {ACCEPTED}")


def crawl_name(name: str) -> Optional[str]:
    m = _CRAWL_NAME.search(name)
    return m.group(1).upper() if m else None


# -- Parquet --------------------------------------------------------------------------------------


def read_parquet(
    raw: IO[bytes],
    report: ReadReport,
    text_fields: tuple[str, ...],
    url_fields: tuple[str, ...],
    id_fields: tuple[str, ...],
    max_bytes: int,
) -> Iterator[Union[RawRecord, Skipped]]:
    import pyarrow.parquet as pq

    report.format = "parquet"
    try:
        pf = pq.ParquetFile(raw)
        names = set(pf.schema_arrow.names)
        text_col = next((f for f in text_fields if f in names), None)
        if text_col is None:
            raise UnsupportedShardError(
                f"Parquet shard has no text column (looked for {', '.join(text_fields)}; has {sorted(names)})"
            )
        url_col = next((f for f in url_fields if f in names), None)
        id_col = next((f for f in id_fields if f in names), None)
        cols = [c for c in (text_col, url_col, id_col) if c]
        row = 0
        for batch in pf.iter_batches(columns=cols, batch_size=2048):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                row += 1
                report.records += 1
                text = data[text_col][i]
                if not isinstance(text, str):
                    yield Skipped("no_text")
                    continue
                if len(text) > max_bytes:
                    yield Skipped("too_large")
                    continue
                ident = data[id_col][i] if id_col else None
                yield RawRecord(
                    key=str(ident) if ident is not None else f"row:{row}",
                    payload=text,
                    kind="text",
                    url=data[url_col][i] if url_col else None,
                    offset=row,
                )
    except UnsupportedShardError:
        raise
    except Exception as exc:
        report.broke(exc)
