"""The landing resource: one lookup to open a shard's file, a listing only when the key needs one."""

from __future__ import annotations

import pytest

from resources.landing import CrawlLanding


def test_a_shard_file_is_found_without_listing_the_landing(tmp_path, monkeypatch):
    for i in range(50):
        (tmp_path / f"CC-MAIN-{i:05d}.warc.gz").write_bytes(b"x" * i)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.jsonl.gz").write_bytes(b"y")
    (tmp_path / "half.warc.gz.tmp").write_bytes(b"z")
    landing = CrawlLanding(location=str(tmp_path))
    listed = []
    real = CrawlLanding.files
    monkeypatch.setattr(CrawlLanding, "files", lambda self: listed.append(1) or real(self))

    found = landing.file("CC-MAIN-00007.warc.gz")
    assert (found.name, found.size, listed) == ("CC-MAIN-00007.warc.gz", 7, [])
    deep = landing.file("sub__deep.jsonl.gz")  # a key made from a sub-directory path: found by listing
    assert (deep.name, listed) == ("sub/deep.jsonl.gz", [1])
    with pytest.raises(FileNotFoundError, match="has no file in the landing location"):
        landing.file("half.warc.gz.tmp")  # still being written: not a shard file yet
    with pytest.raises(FileNotFoundError, match="was it moved"):
        landing.file("CC-MAIN-99999.warc.gz")
