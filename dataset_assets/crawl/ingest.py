"""One crawl shard file to document batches: picks the reader by format, no Dagster involved."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import PurePosixPath
from typing import IO, Callable, Optional, Union

import pyarrow as pa

from dataset_assets.crawl.documents import DocumentRules, DocumentStats, ShardInfo, build_documents
from dataset_assets.crawl.jsonl import read_jsonl
from dataset_assets.crawl.readers import ReadReport, crawl_name, read_parquet, shard_format
from dataset_assets.crawl.warc import read_warc

# A record larger than this is dropped as `too_large` before any parsing.
MAX_RECORD_BYTES = 8 * 1024 * 1024


def ingest_shard(
    shard: str,
    name: str,
    opener: Callable[[], Union[str, IO[bytes]]],
    rules: DocumentRules,
    stats: DocumentStats,
    report: ReadReport,
    text_fields: tuple[str, ...] = ("text",),
    url_fields: tuple[str, ...] = ("url", "metadata.url"),
    id_fields: tuple[str, ...] = ("id",),
    max_record_bytes: int = MAX_RECORD_BYTES,
    on_record: Optional[Callable[[], None]] = None,
) -> Iterator[pa.RecordBatch]:
    """Yield kept documents of shard file `name`; `opener` returns a local path or a binary stream.

    Raises UnsupportedShardError (naming the file and the accepted formats) for a non-shard file.
    """
    fmt = shard_format(name)
    with ExitStack() as stack:
        source = opener()
        if not isinstance(source, str):
            stack.callback(source.close)
        if fmt == "warc":
            records = read_warc(source, report, max_record_bytes)
        else:
            if isinstance(source, str):
                source = stack.enter_context(open(source, "rb"))
            if fmt == "jsonl":
                records = read_jsonl(source, name, report, text_fields, url_fields, id_fields, max_record_bytes)
            else:
                records = read_parquet(source, report, text_fields, url_fields, id_fields, max_record_bytes)
        # Records are read lazily; the crawl name from a warcinfo record is known once reading starts.
        info = ShardInfo(shard=shard, crawl="", source_file=name, format=fmt)

        def with_crawl():
            for item in records:
                info.crawl = report.crawl or crawl_name(name) or PurePosixPath(name).name.split(".")[0]
                if on_record is not None:
                    on_record()
                yield item

        yield from build_documents(with_crawl(), info, rules, stats)
