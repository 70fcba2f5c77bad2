"""Readers and the document pipeline on every format and every kind of damaged input."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from dataset_assets.crawl.documents import DocumentRules, DocumentStats
from dataset_assets.crawl.ingest import ingest_shard
from dataset_assets.crawl.readers import ReadReport, UnsupportedShardError, shard_format
from tests.conftest import CRAWL, english, html_page, warc_record, write_jsonl_gz, write_warc_gz


def ingest_rows(path, **kwargs):
    stats, report = DocumentStats(), ReadReport()
    batches = list(
        ingest_shard(
            path.name, path.name, lambda: str(path), kwargs.pop("rules", DocumentRules()), stats, report, **kwargs
        )
    )
    out = [r for b in batches for r in b.to_pylist()]
    return out, stats, report


def test_real_common_crawl_warc_keeps_lineage_and_counts_skipped_records():
    docs, stats, report = ingest_rows(CRAWL / "cc-main-2020-34-excerpt.warc.gz", rules=DocumentRules(languages=None))
    assert report.format == "warc" and report.crawl == "CC-MAIN-2020-34" and not report.truncated
    assert stats.drops["warc_request"] == 17 and stats.drops["warc_metadata"] == 16
    assert len(docs) + stats.drops["too_short"] + stats.drops["empty_text"] == 16
    doc = docs[0]
    assert doc["warc_record_id"].startswith("<urn:uuid:") and doc["url"].startswith("http")
    assert doc["offset"] > 0 and doc["crawl"] == "CC-MAIN-2020-34" and doc["shard"] == "cc-main-2020-34-excerpt.warc.gz"
    assert {"zh", "de", "ru"} <= set(stats.languages)


def test_real_warc_language_filter_drops_with_reason():
    docs, stats, _ = ingest_rows(CRAWL / "web-pages-a.warc.gz")
    assert docs and all(d["lang"] == "en" for d in docs)
    assert stats.drops["language"] > 300  # the sample is mostly German
    assert stats.languages["de"] > 300


def test_clueweb_malformed_dates_are_kept_verbatim():
    docs, stats, report = ingest_rows(
        CRAWL / "clueweb09-quirk.warc.gz", rules=DocumentRules(languages=["ja"], min_lang_score=0.3)
    )
    assert not report.truncated and report.records == 30
    assert len(docs) >= 20, stats.drops
    assert any(d["date"] == "2008-10-294T05:21:46-0700" for d in docs)
    assert all("\ufffd" not in d["text"][:200] for d in docs)  # EUC-JP decoded, not mojibake


def test_truncated_gzip_keeps_earlier_records(tmp_path):
    full = (CRAWL / "web-pages-a.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(full[: len(full) // 2])
    whole, _, _ = ingest_rows(CRAWL / "web-pages-a.warc.gz", rules=DocumentRules(languages=None))
    docs, stats, report = ingest_rows(cut, rules=DocumentRules(languages=None))
    assert report.truncated and report.error
    assert 150 < len(docs) < len(whole)
    whole_keys = [d["record_key"] for d in whole]
    assert [d["record_key"] for d in docs] == whole_keys[: len(docs)]  # exactly the records before the break


def test_corrupt_gzip_keeps_records_before_the_damage(tmp_path):
    data = bytearray((CRAWL / "web-pages-a.warc.gz").read_bytes())
    data[3_000_000:3_000_200] = b"\x00" * 200
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(bytes(data))
    docs, _, report = ingest_rows(bad, rules=DocumentRules(languages=None))
    assert report.truncated and "decompression" in report.error.lower()
    assert len(docs) > 100


def test_truncated_jsonl_gzip_keeps_complete_lines(tmp_path):
    src = write_jsonl_gz(
        tmp_path / "full.jsonl.gz", [{"id": str(i), "text": english(i), "url": f"u{i}"} for i in range(400)]
    )
    cut = tmp_path / "cut.jsonl.gz"
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    docs, stats, report = ingest_rows(cut)
    assert report.truncated
    assert 50 < len(docs) < 400 and stats.drops["bad_json"] == 0
    assert [d["record_key"] for d in docs] == [str(i) for i in range(len(docs))]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json.gz", ".zst"])
def test_jsonl_variants_read_the_same_documents(tmp_path, suffix):
    lines = "".join(
        json.dumps({"id": f"d{i}", "text": english(i), "url": f"http://x/{i}"}) + "\n" for i in range(5)
    ).encode()
    path = tmp_path / f"shard{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(lines))
    elif suffix == ".zst":
        path.write_bytes(zstandard.ZstdCompressor().compress(lines))
    else:
        path.write_bytes(lines)
    docs, stats, report = ingest_rows(path)
    assert report.format == "jsonl" and [d["record_key"] for d in docs] == [f"d{i}" for i in range(5)]
    assert docs[2]["url"] == "http://x/2" and docs[2]["text"].startswith("Report number 2")


def test_jsonl_configurable_fields_and_bad_lines(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(
        json.dumps({"doc": {"body": english(1)}, "meta": {"link": "http://a"}, "key": 7})
        + "\n"
        + "{not json\n"
        + json.dumps({"other": "no text here"})
        + "\n"
        + json.dumps([1, 2])
        + "\n"
    )
    docs, stats, _ = ingest_rows(path, text_fields=("doc.body",), url_fields=("meta.link",), id_fields=("key",))
    assert [(d["record_key"], d["url"]) for d in docs] == [("7", "http://a")]
    assert stats.drops == {"bad_json": 2, "no_text": 1}


def test_real_dolma_and_c4_jsonl():
    dolma, stats, _ = ingest_rows(CRAWL / "cc-main-2019-30-docs.jsonl.gz")
    assert dolma and all(d["crawl"] == "CC-MAIN-2019-30" for d in dolma)
    assert stats.drops["no_text"] == 27  # 27 records there have an empty text field
    c4, _, _ = ingest_rows(CRAWL / "c4-en-sample-1000.jsonl.gz")
    assert len(c4) > 900 and c4[0]["url"].startswith("http")


def test_parquet_shard(tmp_path):
    path = tmp_path / "dump.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": [english(1), english(2)], "url": ["http://a", "http://b"]}), path
    )
    docs, _, report = ingest_rows(path)
    assert report.format == "parquet" and [d["record_key"] for d in docs] == ["a", "b"]


def test_wet_conversion_records_are_plain_text(tmp_path):
    path = write_warc_gz(
        tmp_path / "x.warc.wet.gz",
        [
            warc_record("conversion", "http://w/1", english(1).encode()),
            warc_record("conversion", "http://w/2", english(2).encode()),
        ],
    )
    docs, stats, _ = ingest_rows(path)
    assert [d["url"] for d in docs] == ["http://w/1", "http://w/2"] and docs[0]["text"] == english(1)


def test_pdf_image_revisit_and_http_errors_are_named_drops(tmp_path):
    path = write_warc_gz(
        tmp_path / "mixed.warc.gz",
        [
            warc_record(payload=html_page(english(1))),
            warc_record(payload=b"%PDF-1.7\n%binary stuff\x00\x01", content_type="application/pdf"),
            warc_record(payload=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", content_type="image/png"),
            warc_record(payload=b"%PDF-1.4 mislabelled", content_type="text/html"),
            warc_record("revisit", payload=b"HTTP/1.1 304 Not Modified\r\n\r\n", http=False),
            warc_record(payload=html_page(english(2)), status=404),
            warc_record(payload=html_page(english(3))),
        ],
    )
    docs, stats, report = ingest_rows(path)
    assert [d["text"].split(".")[0] for d in docs] == [
        "Report number 1 about the bridge",
        "Report number 3 about the bridge",
    ]
    assert stats.drops == {"non_html": 3, "warc_revisit": 1, "http_status": 1}
    assert not report.truncated


def test_invalid_utf8_and_unknown_charset_decode_without_losing_the_record(tmp_path):
    body = html_page(english(1) + " Caf\u00e9 cr\u00e8me.").replace(b"caf\xc3\xa9", b"caf\xff")
    latin = html_page(english(2) + " Caf\u00e9 cr\u00e8me.").decode().encode("latin-1")
    path = write_warc_gz(
        tmp_path / "enc.warc.gz",
        [
            warc_record(payload=body + b"\xff\xfe\xfa broken bytes"),
            warc_record(payload=latin, content_type="text/html; charset=x-unknown-charset"),
            warc_record(payload=html_page(english(3)), content_type='text/html; charset="utf-8"'),
        ],
    )
    docs, stats, _ = ingest_rows(path)
    assert len(docs) == 3, stats.drops
    assert "Caf\u00e9 cr\u00e8me" in docs[1]["text"]


def test_enormous_documents_are_capped_or_dropped_with_reason(tmp_path):
    huge_text = " ".join([english(i) for i in range(2000)])  # ~800 kB of text
    path = write_warc_gz(
        tmp_path / "big.warc.gz",
        [
            warc_record(payload=html_page(huge_text)),
            warc_record(payload=b"<html><body>" + b"<p>x</p>" * 2_000_000 + b"</body></html>"),
            warc_record(payload=html_page(english(5))),
        ],
    )
    docs, stats, _ = ingest_rows(path, rules=DocumentRules(max_chars=50_000), max_record_bytes=4_000_000)
    assert stats.drops["too_large"] == 1 and stats.capped == 1
    assert docs[0]["capped"] and len(docs[0]["text"]) <= 50_000 and not docs[1]["capped"]


def test_empty_files_give_an_empty_shard(tmp_path):
    for name in ("empty.warc.gz", "empty.jsonl", "empty.jsonl.gz"):
        path = tmp_path / name
        path.write_bytes(b"")
        docs, _, report = ingest_rows(path)
        assert docs == [] and report.records == 0, name


def test_non_crawl_file_is_refused_naming_file_and_formats(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedShardError) as err:
        list(ingest_shard("notes.txt", "notes.txt", lambda: str(path), DocumentRules(), DocumentStats(), ReadReport()))
    assert "notes.txt" in str(err.value) and ".warc.gz" in str(err.value) and ".parquet" in str(err.value)
    assert shard_format("a.WARC.GZ") == "warc"


def test_duplicates_are_kept_with_equal_content_hashes_for_the_dedup_stages(tmp_path):
    """crawl_docs removes no duplicate itself (that is the order-independent work of the dedup
    stages); a case, spacing and punctuation variant carries the same content hash."""
    text = english(1)
    path = write_jsonl_gz(
        tmp_path / "d.jsonl.gz",
        [
            {"id": "a", "text": text},
            {"id": "b", "text": "  " + text.lower().replace(",", " ,")},
            {"id": "c", "text": english(2)},
        ],
    )
    docs, stats, _ = ingest_rows(path)
    assert [d["record_key"] for d in docs] == ["a", "b", "c"] and "duplicate" not in stats.drops
    assert docs[0]["content_hash"] == docs[1]["content_hash"] != docs[2]["content_hash"]


def test_short_and_empty_texts_are_named_drops(tmp_path):
    path = write_jsonl_gz(tmp_path / "s.jsonl.gz", [{"text": "too short"}, {"text": "   \n  "}, {"text": english(1)}])
    docs, stats, _ = ingest_rows(path)
    assert len(docs) == 1 and stats.drops == {"too_short": 1, "empty_text": 1}
