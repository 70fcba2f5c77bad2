"""The rules the layout stands on, checked on the code itself, so a change that breaks one fails here.

Dagster is imported only in `defs/`, `definitions.py`, `cli.py` and `orchestration/` (and in
`resources/`); every other module of the package is Dagster-free. No import runs back up: a pure
stage package never imports the status bookkeeping, the Dagster helpers, `defs` or the CLI, and the
status bookkeeping never imports the Dagster helpers. A `defs` module never imports another;
`resources/` never imports `dataset_assets`; Dagster's private names come in through one module;
every environment variable is read in `settings.py`; no function over 60 lines, no module over 300.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "dataset_assets"
STAGES = ["crawl", "quality", "rephrase", "dedup", "stats", "mixtures", "proxy"]
PURE = [*STAGES, "status", "progress.py", "settings.py", "file_schema.py", "__init__.py"]
# Where Dagster may be imported inside the package: its glue, the code location, the CLI, the helpers they share.
DAGSTER_HOMES = ["defs", "orchestration", "definitions.py", "cli"]
SOURCES = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "resources").rglob("*.py")])


def imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return found


def files_of(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_pure_packages_never_import_dagster_or_defs():
    bad = [
        f"{rel(f)} imports {m}"
        for entry in PURE
        for f in files_of(entry)
        for m in imports(f)
        if m == "dagster" or m.startswith(("dagster.", "dagster_", "dataset_assets.defs", "dataset_assets.definitions"))
    ]
    assert bad == []


def test_every_module_outside_the_dagster_homes_is_listed_as_pure():
    """A new top-level module or package must say which side it is on (a pure one is then held to it)."""
    entries = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py")))}
    assert entries == set(PURE) | set(DAGSTER_HOMES)


def test_no_import_runs_back_up():
    """Stage packages are used by the bookkeeping, the helpers, `defs` and the CLI, never the reverse;
    the status bookkeeping is used by the Dagster helpers, never the reverse."""
    above_stages = (
        "dataset_assets.status",
        "dataset_assets.orchestration",
        "dataset_assets.defs",
        "dataset_assets.definitions",
        "dataset_assets.cli",
    )
    bad = [
        f"{rel(f)} imports {m}"
        for entry in STAGES
        for f in files_of(entry)
        for m in imports(f)
        if m.startswith(above_stages)
    ]
    above_status = (
        "dataset_assets.orchestration",
        "dataset_assets.defs",
        "dataset_assets.definitions",
        "dataset_assets.cli",
    )
    bad += [f"{rel(f)} imports {m}" for f in files_of("status") for m in imports(f) if m.startswith(above_status)]
    assert bad == []


def test_a_defs_module_never_imports_another():
    defs = sorted((PACKAGE / "defs").glob("*.py"))
    assert len(defs) >= 8
    bad = [f"{rel(f)} imports {m}" for f in defs for m in imports(f) if m.startswith("dataset_assets.defs")]
    assert bad == []


def test_resources_never_import_the_project():
    bad = [
        f"{rel(f)} imports {m}"
        for f in (ROOT / "resources").rglob("*.py")
        for m in imports(f)
        if m.startswith("dataset_assets")
    ]
    assert bad == []


def test_private_dagster_names_come_through_one_module():
    bad = [
        rel(f)
        for f in SOURCES
        if any(m.startswith("dagster._") for m in imports(f)) and f.name != "dagster_internals.py"
    ]
    assert bad == []
    # And that module still finds every one of them in the installed Dagster.
    from dataset_assets.orchestration import dagster_internals

    for name in dagster_internals.__all__:
        assert getattr(dagster_internals, name) is not None, name


def _env_reads(path: Path) -> list[int]:
    """Lines reading the environment: os.environ.get/[...] as a value, os.getenv, `in os.environ`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("get", "getenv")
            and ast.unparse(node.value) in ("os.environ", "os")
        ):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.ctx, ast.Load)
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(ast.unparse(c) == "os.environ" for c in node.comparators):
            lines.append(node.lineno)
    return lines


def test_every_environment_variable_is_read_in_settings():
    bad = {rel(f): _env_reads(f) for f in SOURCES if f.name != "settings.py" and _env_reads(f)}
    assert bad == {}
    assert _env_reads(PACKAGE / "settings.py")  # the check itself sees reads where they are


def test_no_function_over_60_lines_and_no_module_over_300():
    long_functions = [
        f"{rel(f)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for f in SOURCES
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long_functions == []
    long_modules = [
        rel(f)
        for f in SOURCES
        if len(f.read_text().splitlines()) > 300
        and "longer than 300 lines because" not in (ast.get_docstring(ast.parse(f.read_text())) or "")
    ]
    assert long_modules == []


def test_model_files_are_hashed_in_blocks_not_read_whole(tmp_path, monkeypatch):
    from resources.hashing import file_sha256

    model = tmp_path / "model.bin"
    model.write_bytes(b"x" * (3 << 20))
    reads = []
    real_open = open

    def recording_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if str(path) == str(model):
            real_read = handle.read
            handle_read = lambda size=-1: (reads.append(size), real_read(size))[1]  # noqa: E731
            return _Reader(handle, handle_read)
        return handle

    monkeypatch.setattr("builtins.open", recording_open)
    assert file_sha256(model) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()
    assert reads and all(0 < size <= 1 << 20 for size in reads)


class _Reader:
    def __init__(self, handle, read):
        self._handle, self.read = handle, read

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


@pytest.mark.parametrize("entry", PURE)
def test_each_pure_entry_exists(entry):
    assert files_of(entry), entry


def test_every_environment_variable_is_documented():
    import re

    source = (PACKAGE / "settings.py").read_text()
    # Every quoted upper-case name in settings.py is an environment variable (read directly or by a helper).
    names = set(re.findall(r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"', source))
    assert {"DATASET_LAKE", "MIXTURE_TOKENIZER", "REPHRASE_CONCURRENCY"} <= names
    readme = (ROOT / "README.md").read_text()
    assert sorted(n for n in names if f"`{n}`" not in readme) == []
