"""Crawl shard readers: WARC/WET, JSONL (plain, gzip, zstd) and Parquet to raw records.

A reader yields `RawRecord`s and `Skipped(reason)`s and never raises on damaged input: a broken
compressed stream ends the shard early and is written into the `ReadReport`, keeping every record
read before the break.
"""

from __future__ import annotations

import json
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


# -- WARC -----------------------------------------------------------------------------------------


def _http_head(block: bytes) -> tuple[int, dict[str, str], int]:
    """Status code, lower-cased headers and the payload offset of an HTTP response block."""
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    if end < 0 or not block.startswith(b"HTTP/"):
        return 0, {}, 0  # not an HTTP block (e.g. a bare payload): treat everything as payload
    lines = block[:end].decode("latin-1").splitlines()
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, end + sep


_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3")


def _looks_binary(payload: bytes) -> bool:
    head = payload[:512].lstrip()
    return head.startswith(_BINARY_MAGIC) or head.count(b"\x00") > 8


def _content_type(headers: dict[str, str]) -> tuple[str, Optional[str]]:
    ct = headers.get("content-type", "")
    mime, _, params = ct.partition(";")
    charset = None
    m = re.search(r"charset\s*=\s*[\"']?([^\"';\s]+)", params, re.IGNORECASE)
    if m:
        charset = m.group(1)
    return mime.strip().lower(), charset


def read_warc(source: Union[str, IO[bytes]], report: ReadReport, max_bytes: int) -> Iterator[Union[RawRecord, Skipped]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    report.format = "warc"
    wanted = WarcRecordType.any_type
    kwargs = {"fsspec_args": False} if isinstance(source, str) else {}
    try:
        iterator = ArchiveIterator(source, parse_http=False, record_types=wanted, **kwargs)
        for rec in iterator:
            report.records += 1
            report.position = rec.stream_pos
            rtype = rec.record_type
            if rtype == WarcRecordType.warcinfo:
                body = rec.reader.read(65536)
                m = re.search(rb"isPartOf:\s*(\S+)", body)
                if m and not report.crawl:
                    report.crawl = m.group(1).decode("utf-8", "replace")
                continue
            if rtype not in (WarcRecordType.response, WarcRecordType.conversion, WarcRecordType.resource):
                yield Skipped(f"warc_{_type_name(rtype)}")
                continue
            declared = rec.content_length
            block = rec.reader.read(max_bytes + 1)
            if len(block) > max_bytes:
                yield Skipped("too_large")
                continue
            if len(block) < declared:
                # The stream ended inside this record: it is the break, keep what came before.
                report.truncated = True
                report.error = report.error or f"record at offset {rec.stream_pos} cut short ({len(block)} of {declared} bytes)"
                yield Skipped("truncated_record")
                break
            url = rec.headers.get("WARC-Target-URI")
            rid = rec.headers.get("WARC-Record-ID")
            date = rec.headers.get("WARC-Date")  # kept verbatim: ClueWeb09 dates are malformed
            common = dict(key=rid or f"offset:{rec.stream_pos}", url=url, offset=rec.stream_pos, date=date, warc_record_id=rid)
            if rtype == WarcRecordType.conversion:
                yield RawRecord(payload=block.decode("utf-8", "replace"), kind="text", **common)
                continue
            status, headers, start = _http_head(block)
            payload = block[start:]
            if status and not 200 <= status < 300:
                yield Skipped("http_status")
                continue
            mime, charset = _content_type(headers)
            if (mime and not mime.startswith(HTML_TYPES)) or _looks_binary(payload):
                yield Skipped("non_html")
                continue
            yield RawRecord(payload=payload, kind="html", charset=charset, **common)
    except Exception as exc:  # fastwarc raises OSError on a corrupt stream; anything else is the same break
        report.broke(exc)


def _type_name(rtype) -> str:
    return str(rtype).rsplit(".", 1)[-1].lower()


# -- JSONL ----------------------------------------------------------------------------------------


def _decompressed_chunks(raw: IO[bytes], name: str, report: ReadReport, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Decompressed bytes as they come; a damaged or cut stream ends the iteration and marks the
    report, after yielding everything decoded before the damage."""
    lower = name.lower()
    if lower.endswith(".gz"):
        import zlib

        def new():
            return zlib.decompressobj(wbits=31)

        error: type[Exception] = zlib.error
    elif lower.endswith(".zst"):
        import zstandard

        def new():
            return zstandard.ZstdDecompressor().decompressobj()

        error = zstandard.ZstdError
    else:
        while chunk := raw.read(chunk_size):
            yield chunk
        return
    decoder, fed, data = new(), False, b""
    try:
        while True:
            data = data or raw.read(chunk_size)
            if not data:
                break
            out = decoder.decompress(data)
            fed, data = True, b""
            yield out
            if decoder.eof:  # end of one gzip member / zstd frame: the next one may follow
                data, decoder, fed = decoder.unused_data, new(), False
    except error as exc:
        report.broke(exc)
        return
    if fed and not decoder.eof:
        report.truncated = True
        report.error = f"{name}: compressed stream ends before its end marker (file cut short)"


TOO_LARGE = object()  # stands for a line longer than the record limit, which is never held whole


def _lines(chunks: Iterator[bytes], max_bytes: int) -> Iterator[Union[bytes, object]]:
    """Lines with their newline; a final fragment without one comes last (the caller decides)."""
    tail, oversize = b"", False
    for chunk in chunks:
        while chunk:
            cut = chunk.find(b"\n")
            if cut < 0:
                if not oversize:
                    tail += chunk
                    if len(tail) > max_bytes:
                        tail, oversize = b"", True
                break
            piece, chunk = chunk[: cut + 1], chunk[cut + 1 :]
            if oversize or len(tail) + len(piece) > max_bytes:
                yield TOO_LARGE
            else:
                yield tail + piece
            tail, oversize = b"", False
    if oversize:
        yield TOO_LARGE
    elif tail:
        yield tail


def _get(obj: dict, path: str):
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _first(obj: dict, paths: tuple[str, ...]):
    for p in paths:
        v = _get(obj, p)
        if v not in (None, ""):
            return v
    return None


def read_jsonl(
    raw: IO[bytes],
    name: str,
    report: ReadReport,
    text_fields: tuple[str, ...],
    url_fields: tuple[str, ...],
    id_fields: tuple[str, ...],
    max_bytes: int,
) -> Iterator[Union[RawRecord, Skipped]]:
    report.format = "jsonl"
    line_no = 0
    for line in _lines(_decompressed_chunks(raw, name, report), max_bytes):
        line_no += 1
        if line is TOO_LARGE:
            report.records += 1
            yield Skipped("too_large")
            continue
        if report.truncated and not line.endswith(b"\n"):
            yield Skipped("truncated_record")  # the half line at the break
            continue
        if not line.strip():
            continue
        report.records += 1
        if line_no % 256 == 0 and hasattr(raw, "tell"):
            report.position = raw.tell()
        try:
            obj = json.loads(line)
        except ValueError:
            yield Skipped("bad_json")
            continue
        if not isinstance(obj, dict):
            yield Skipped("bad_json")
            continue
        text = _first(obj, text_fields)
        if not isinstance(text, str):
            yield Skipped("no_text")
            continue
        url = _first(obj, url_fields)
        ident = _first(obj, id_fields)
        offset = _first(obj, ("metadata.offset", "offset"))
        yield RawRecord(
            key=str(ident) if ident is not None else f"line:{line_no}",
            payload=text,
            kind="text",
            url=str(url) if url is not None else None,
            offset=int(offset) if isinstance(offset, int) else line_no,
            date=str(_first(obj, ("timestamp", "metadata.warc_date", "date", "created")) or "") or None,
            warc_record_id=_first(obj, ("metadata.warc_record_id", "warc_record_id")),
        )


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
            raise UnsupportedShardError(f"Parquet shard has no text column (looked for {', '.join(text_fields)}; has {sorted(names)})")
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
