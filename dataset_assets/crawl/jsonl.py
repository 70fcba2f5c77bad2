"""JSONL shards (plain, gzip or zstd) to raw records: streamed, with bounded lines; a broken
compressed stream ends the shard early and keeps every record before the break."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Union

from dataset_assets.crawl.readers import RawRecord, ReadReport, Skipped


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
