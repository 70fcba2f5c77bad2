"""The lake: Hive layout readable by DuckDB and pyarrow, atomic replace, safe partition names."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from resources.lake import Lake
from resources.paths import check_partition_value, sanitise_shard_key

SCHEMA = pa.schema([("id", pa.string()), ("shard", pa.string()), ("n", pa.int64())])


def batch(ids, shard="s1"):
    return pa.RecordBatch.from_pydict(
        {"id": ids, "shard": [shard] * len(ids), "n": list(range(len(ids)))}, schema=SCHEMA
    )


def test_partition_is_hive_parquet_readable_by_duckdb_and_pyarrow(tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    lake.write_partition("docs", {"shard": "s1"}, [batch(["a", "b"])], SCHEMA)
    lake.write_partition("docs", {"shard": "s2"}, [batch(["c"], "s2")], SCHEMA)
    files = list((tmp_path / "lake" / "docs").rglob("*.parquet"))
    assert sorted(f.relative_to(tmp_path / "lake").as_posix() for f in files) == [
        "docs/shard=s1/part-00000.parquet",
        "docs/shard=s2/part-00000.parquet",
    ]
    glob = str(tmp_path / "lake" / "docs" / "*" / "*.parquet")
    rows = duckdb.sql(
        f"select shard, count(*) from read_parquet('{glob}', hive_partitioning=true) group by 1 order by 1"
    ).fetchall()
    assert rows == [("s1", 2), ("s2", 1)]
    assert lake.dataset("docs").to_table().num_rows == 3
    assert lake.partition_values("docs", "shard") == ["s1", "s2"]
    assert (lake.partition_rows("docs", {"shard": "s1"}), lake.partition_rows("docs", {"shard": "none"})) == (2, 0)
    meta = __import__("pyarrow.parquet", fromlist=["x"]).ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression.lower() == "zstd"


def test_rewriting_a_partition_replaces_it(tmp_path):
    lake = Lake(root=str(tmp_path))
    first = lake.write_partition("docs", {"shard": "s1"}, [batch(["a", "b"])], SCHEMA)
    second = lake.write_partition("docs", {"shard": "s1"}, [batch(["x"])], SCHEMA)
    assert lake.read_partition("docs", {"shard": "s1"}).column("id").to_pylist() == ["x"]
    assert first.data_version != second.data_version
    again = lake.write_partition("docs", {"shard": "s1"}, [batch(["x"])], SCHEMA)
    assert again.data_version == second.data_version  # same content, same version


def test_a_write_that_dies_midway_leaves_the_old_partition_and_no_finished_file(tmp_path):
    lake = Lake(root=str(tmp_path))
    lake.write_partition("docs", {"shard": "s1"}, [batch(["old"])], SCHEMA)

    def dying():
        yield batch(["new1"])
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        lake.write_partition("docs", {"shard": "s1"}, dying(), SCHEMA)
    assert lake.read_partition("docs", {"shard": "s1"}).column("id").to_pylist() == ["old"]
    with pytest.raises(RuntimeError):
        lake.write_partition("docs", {"shard": "s9"}, dying(), SCHEMA)
    assert not lake.has_partition("docs", {"shard": "s9"})
    assert not list((tmp_path / "_staging").rglob("*.parquet"))


def test_reading_a_missing_partition_says_what_to_do(tmp_path):
    lake = Lake(root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="materialise it first"):
        lake.read_partition("docs", {"shard": "nope"})


@pytest.mark.parametrize(
    "name,key",
    [
        ("CC-MAIN-2020-34.warc.gz", "CC-MAIN-2020-34.warc.gz"),
        ("sub/dir/a b.jsonl", "sub__dir__a_b.jsonl"),
        ("../../etc/passwd", "etc__passwd"),
        ("/abs/path/x.warc.gz", "abs__path__x.warc.gz"),
        ("..hidden..warc", "hidden.warc"),
        ("we\u00efrd;$(rm -rf).jsonl", "we_rd_rm_-rf_.jsonl"),
    ],
)
def test_shard_keys_are_sanitised(name, key):
    assert sanitise_shard_key(name) == key
    assert check_partition_value("shard", key) == key


@pytest.mark.parametrize("value", ["..", "../x", "a/b", "/abs", ".hidden", "a..b", ""])
def test_unsafe_partition_values_are_refused(tmp_path, value):
    with pytest.raises(ValueError, match="not a safe path segment"):
        Lake(root=str(tmp_path)).partition_path("docs", {"shard": value})


def test_json_and_bytes_round_trip_atomically(tmp_path):
    lake = Lake(root=str(tmp_path))
    lake.put_json(["a", "b.json"], {"x": 1})
    assert lake.get_json(["a", "b.json"]) == {"x": 1}
    assert lake.exists(["a", "b.json"]) and not lake.exists(["a", "c.json"])
