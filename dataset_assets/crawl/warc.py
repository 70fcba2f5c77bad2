"""WARC/WET shards to raw records (warcio), skipping non-response records and non-text payloads by name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Optional, Union

from dataset_assets.crawl.readers import HTML_TYPES, RawRecord, ReadReport, Skipped


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


_BINARY_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"PK\x03\x04",
    b"RIFF",
    b"\x00\x00\x01\x00",
    b"OggS",
    b"ID3",
)


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
                report.error = (
                    report.error or f"record at offset {rec.stream_pos} cut short ({len(block)} of {declared} bytes)"
                )
                yield Skipped("truncated_record")
                break
            url = rec.headers.get("WARC-Target-URI")
            rid = rec.headers.get("WARC-Record-ID")
            date = rec.headers.get("WARC-Date")  # kept verbatim: ClueWeb09 dates are malformed
            common = dict(
                key=rid or f"offset:{rec.stream_pos}", url=url, offset=rec.stream_pos, date=date, warc_record_id=rid
            )
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
