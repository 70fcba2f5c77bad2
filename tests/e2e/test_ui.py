"""The Dagster UI in a real browser: `dagster dev` (webserver and daemon) on a temporary Dagster
home, driven through Chromium with Playwright; every test runs on SQLite and on PostgreSQL (the
prod profile's deploy/dagster.yaml on a throwaway server).

Needs Chromium (Debian: `apt-get install chromium`, or CHROMIUM=/path) and `pip install playwright`;
Playwright's own browser download is not used. Skipped without them unless UI_TESTS_REQUIRED=1.
Screenshots, the `dagster dev` log and the preparation log go to tests/artifacts/ui/ (or
$TEST_ARTIFACTS/ui) and are kept after the run.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CRAWL, QUALITY, ROOT
from tests.support.postgres import prod_instance_env
from tests.support.processes import stop_process_tree
from tests.support.s3 import free_port, local_s3  # noqa: F401  (a fixture)

# CI sets UI_TESTS_REQUIRED=1 so that a missing browser or Playwright fails instead of skipping.
REQUIRED = os.environ.get("UI_TESTS_REQUIRED") == "1"
if REQUIRED:
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")

MODULE = "dataset_assets.definitions"
UI_SHARD = "cc-main-2020-34-excerpt.warc.gz"  # materialised from the UI
STATS_SHARD = "cc-main-2019-30-docs.jsonl.gz"  # materialised beforehand for corpus_stats' upstreams
STATS = "corpus_stats"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or ROOT / "tests" / "artifacts") / "ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
SECRET = "ui-secret-" + os.urandom(12).hex()


def chromium() -> str | None:
    for candidate in (
        os.environ.get("CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


if REQUIRED and chromium() is None:
    raise RuntimeError(
        "UI_TESTS_REQUIRED=1 but no Chromium found: apt-get install chromium, or set CHROMIUM=/path/to/chromium"
    )
pytestmark = pytest.mark.skipif(chromium() is None, reason="needs Chromium: apt-get install chromium (or set CHROMIUM)")


def registered_assets() -> list[str]:
    defs = importlib.import_module(MODULE).defs
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())


# Register the shards and materialise everything `target` needs that runs without the LLM engine
# (the engine-bound branch, rephrased and what derives from it, is optional for statistics), in
# dependency order, one partition at a time, into the same Dagster home the UI then shows.
PREPARE = r"""
import importlib, sys
from dagster import AssetKey, DagsterInstance
from dataset_assets.orchestration.graph import crawl_shards

module, shards, fresh, target = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
defs = importlib.import_module(module).defs
instance = DagsterInstance.get()
instance.add_dynamic_partitions(crawl_shards.name, shards)
if not target:
    sys.exit(0)
graph = defs.resolve_asset_graph()
upstream, stack = set(), [AssetKey.from_user_string(target)]
while stack:
    for parent in graph.get(stack.pop()).parent_keys:
        if parent not in upstream:
            upstream.add(parent)
            stack.append(parent)
def engine_bound(key):
    return "engine" in defs.get_assets_def(key).required_resource_keys or any(
        engine_bound(p) for p in graph.get(key).parent_keys if p in upstream)
order = [k for k in graph.toposorted_asset_keys if k in upstream and not engine_bound(k)]
job = defs.resolve_implicit_global_asset_job_def()
failed = []
for key in order:
    pdef = graph.get(key).partitions_def
    all_keys = [None] if pdef is None else pdef.get_partition_keys(dynamic_partitions_store=instance)
    keys = [p for p in all_keys if p is None or fresh not in str(p)]
    for partition in keys:
        result = job.execute_in_process(instance=instance, asset_selection=[key], partition_key=partition,
                                        raise_on_error=False, tags={"dagster/from": "test_ui prepare"})
        print("ok" if result.success else "FAILED", key.to_user_string(), partition or "", flush=True)
        if not result.success:
            failed.append(key.to_user_string())
sys.exit(1 if failed else 0)
"""


class DagsterDev:
    """`dagster dev` in its own session; `stop()` takes down the whole process tree, whatever state it is in."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.log_path = env, log_path
        self.home = Path(env["DAGSTER_HOME"])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster")),
                "dev",
                "-m",
                MODULE,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {self.proc.returncode}; log {self.log_path}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(
                f"dagster dev did not serve {self.url} within {timeout:.0f} s; log {self.log_path}:\n{self.tail()}"
            )
        self.wait_for_code_location(deadline)

    def wait_for_code_location(self, deadline: float) -> None:
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                     locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
        while time.monotonic() < deadline:
            entries = self.graphql(query)["workspaceOrError"].get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    e = errors[0]
                    raise AssertionError(
                        f"code location {e['name']} failed to load in dagster "
                        f"dev:\n{e['locationOrLoadError']['message']}"
                    )
                return
            time.sleep(1)
        raise RuntimeError(f"the code location did not load; log {self.log_path}:\n{self.tail()}")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def runs(self) -> list[dict]:
        query = """{ runsOrError(limit: 200) { ... on Runs { results { runId status
                     assetSelection { path } tags { key value } } } } }"""
        runs = self.graphql(query)["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
            run["assets"] = sorted("/".join(a["path"]) for a in run["assetSelection"] or [])
        return runs

    def wait_for_new_ui_run(self, asset: str, before: set[str], timeout: float = 240.0) -> dict:
        """The run launched from the UI for `asset` after `before` (run ids), once it has finished."""
        deadline = time.monotonic() + timeout
        run = None
        while time.monotonic() < deadline:
            mine = [
                r
                for r in self.runs()
                if r["runId"] not in before and asset in r["assets"] and r["tags"].get("dagster/from_ui") == "true"
            ]
            run = mine[0] if mine else None
            if run and run["status"] in FINISHED:
                return run
            time.sleep(2)
        raise AssertionError(
            f"no finished UI run of {asset} within {timeout:.0f} s (last seen: {run}); log {self.log_path}"
        )

    def run_errors(self, run_id: str) -> str:
        query = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename
                     ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } } } } } }"""
        events = self.graphql(query, {"id": run_id})["logsForRun"].get("events", [])
        return json.dumps([e for e in events if e["__typename"] == "ExecutionStepFailureEvent"], indent=1)[:4000]

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGINT first (dagster dev shuts its children down on it; SIGTERM it ignores), then SIGKILL
        the process group and any descendant that left it."""
        if self.proc is not None:
            stop_process_tree(self.proc, signal.SIGINT, 20.0)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    print(f"\nUI test artefacts (screenshots, dagster dev log): {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def dagster_dev(request, tmp_path_factory, artifacts):
    """`dagster dev` on SQLite, and on PostgreSQL through the prod profile's own deploy/dagster.yaml (a
    throwaway server; compute logs uploaded to moto's S3)."""
    storage = request.param
    root = tmp_path_factory.mktemp(f"ui-{storage}")
    home, landing, lake = root / "dagster_home", root / "landing", root / "lake"
    for d in (home, landing, lake):
        d.mkdir()
    instance_env = {}
    if storage == "sqlite":
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    else:
        s3 = request.getfixturevalue("local_s3")
        instance_env = prod_instance_env(home, request.getfixturevalue("postgres"), "ui")
        s3.create_bucket(instance_env["DAGSTER_COMPUTE_LOG_BUCKET"])
        instance_env["AWS_ENDPOINT_URL_S3"] = s3.url
    for name in (UI_SHARD, STATS_SHARD):
        shutil.copy(CRAWL / name, landing / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "DAGSTER_", "PYTEST_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DATASET_LAKE=str(lake),
        CRAWL_LANDING=str(landing),
        QUALITY_REFERENCE=str(QUALITY),
        DAGSTER_DEPLOYMENT="local",
        # Fake credentials: with them set the resources take them as EnvVar, and the UI must never show the value.
        AWS_ACCESS_KEY_ID="AKIAUITESTKEYID",
        AWS_SECRET_ACCESS_KEY=SECRET,
        # Nothing listens here: a rephrase run the automation starts fails at once instead of loading a model.
        REPHRASE_ENGINE=f"http://127.0.0.1:{free_port()}/v1",
    )
    env.update(instance_env)
    stats = STATS if STATS in registered_assets() else ""
    start = time.monotonic()
    prepared = subprocess.run(
        [sys.executable, "-c", PREPARE, MODULE, f"{UI_SHARD},{STATS_SHARD}", UI_SHARD, stats],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (artifacts / f"prepare-{storage}.log").write_text(prepared.stdout + prepared.stderr)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr[-4000:]
    print(f"prepared in {time.monotonic() - start:.0f} s: {prepared.stdout.strip()}")
    dev = DagsterDev(env, artifacts / f"dagster-dev-{storage}.log")
    try:
        dev.start()
        with pytest.MonkeyPatch.context() as mp:  # this process reads the same instance
            for name, value in instance_env.items():
                if name != "DAGSTER_HOME":
                    mp.setenv(name, value)
            yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="module")
def browser(dagster_dev):
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, dagster_dev, artifacts, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    pg = context.new_page()
    # The first visit may open a "Join the Dagster community" dialog: skip it whenever it shows up.
    pg.add_locator_handler(
        pg.get_by_text("Join the Dagster community"), lambda _: pg.get_by_role("button", name="Skip").click()
    )
    try:
        yield pg
    finally:
        try:  # the state the test ended in, passed or failed
            shot(pg, artifacts, f"{request.node.name}-last")
        except Exception as exc:
            print(f"no final screenshot of {request.node.name}: {exc}")
        finally:
            context.close()


def shot(page, artifacts: Path, name: str) -> None:
    community = page.get_by_text("Join the Dagster community")
    if community.count() and community.first.is_visible():
        page.locator("body").hover()  # any action lets the page's locator handler skip the dialog
        community.first.wait_for(state="hidden")
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def materialize_button(page):
    # "Materialize…" for partitioned assets or ones with config, "Materialize" otherwise.
    return page.locator("button", has_text=re.compile(r"^Materialize")).first


def test_asset_graph_shows_every_registered_asset(page, dagster_dev, artifacts):
    expected = registered_assets()
    page.goto(f"{dagster_dev.url}/asset-groups")
    page.locator("svg foreignObject").first.wait_for()
    names = page.locator("svg foreignObject [class*='AssetNode_assetName']")
    all_drawn = "n => document.querySelectorAll(\"svg foreignObject [class*='AssetNode_assetName']\").length >= n"
    try:
        page.wait_for_function(all_drawn, arg=len(expected), timeout=3_000)
    except sync_api.TimeoutError:
        # Several groups are drawn collapsed: "Expand all groups" (⌥E, also in the background menu).
        page.keyboard.press("Alt+e")
    try:
        page.wait_for_function(all_drawn, arg=len(expected), timeout=15_000)
    except sync_api.TimeoutError:
        pass  # the assertion below names what is missing
    shot(page, artifacts, "asset-graph")
    shown = names.all_inner_texts()
    missing = [a for a in expected if not any(shows(text, a) for text in shown)]
    assert not missing, f"assets registered in {MODULE} but not drawn in the graph: {missing}; drawn: {shown}"


def shows(text: str, asset: str) -> bool:
    """A node label names the asset (its last path part), whole or middle-truncated with an ellipsis."""
    name = asset.split("/")[-1]
    if text.strip() == name:
        return True
    left, sep, right = text.strip().partition("…")
    return bool(sep) and name.startswith(left) and name.endswith(right)


def test_a_shard_partition_of_crawl_docs_is_materialised_from_the_ui(page, dagster_dev, artifacts):
    before = {r["runId"] for r in dagster_dev.runs()}
    page.goto(f"{dagster_dev.url}/assets/crawl_docs")
    materialize_button(page).click()
    dialog = page.locator(".dagster-dialog").filter(has_text="Launch runs to materialize")
    # Whatever the dialog preselected (all partitions, or none), leave exactly UI_SHARD selected.
    selector = dialog.locator("[class*='TagSelector_tagSelectorContainer']").first
    selector.wait_for()
    others = selector.locator(f"[data-tooltip]:not([data-tooltip='{UI_SHARD}']) [aria-label='close']")
    while others.count():
        others.first.click()
    if not selector.locator(f"[data-tooltip='{UI_SHARD}']").count():
        selector.click()
        # The option list renders each key twice (one copy only measures the width): click the visible one.
        page.locator("[data-state=open]").last.get_by_text(UI_SHARD, exact=True).filter(visible=True).click()
        dialog.get_by_text("Launch runs to materialize").click()  # close the option list
    sync_api.expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch 1 run")
    sync_api.expect(launch).to_be_enabled()
    shot(page, artifacts, "crawl_docs-launch-dialog")
    launch.click()
    run = dagster_dev.wait_for_new_ui_run("crawl_docs", before)
    page.goto(f"{dagster_dev.url}/runs/{run['runId']}")
    page.get_by_text("Success").first.wait_for(timeout=30_000)
    try:
        page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=30_000)  # the event log has loaded
    except sync_api.TimeoutError:
        pass
    shot(page, artifacts, "crawl_docs-run")
    assert run["status"] == "SUCCESS", dagster_dev.run_errors(run["runId"])
    assert run["tags"].get("dagster/partition") == UI_SHARD and run["assets"] == ["crawl_docs"]
    page.goto(f"{dagster_dev.url}/assets/crawl_docs?view=partitions")
    page.get_by_text(UI_SHARD).first.wait_for()
    shot(page, artifacts, "crawl_docs-partitions")


def test_corpus_stats_page_shows_the_table_and_the_plots(page, dagster_dev, artifacts):
    if STATS not in registered_assets():
        pytest.skip(f"{STATS} is not registered in {MODULE} yet")
    before = {r["runId"] for r in dagster_dev.runs()}
    page.goto(f"{dagster_dev.url}/assets/{STATS}")
    materialize_button(page).click()
    confirm = page.get_by_role("button", name="Confirm")  # "upstream not materialised yet" (the engine-bound branch)
    try:
        confirm.click(timeout=5_000)
    except sync_api.TimeoutError:
        pass
    run = dagster_dev.wait_for_new_ui_run(STATS, before)
    assert run["status"] == "SUCCESS", dagster_dev.run_errors(run["runId"])

    latest = dagster_dev.graphql(
        """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset { assetMaterializations(limit: 1) {
             runId metadataEntries { label __typename ... on MarkdownMetadataEntry { mdStr }
               ... on TableMetadataEntry { table { records schema { columns { name } } } } } } } } }""",
        {"key": {"path": STATS.split("/")}},
    )["assetOrError"]["assetMaterializations"][0]
    assert latest["runId"] == run["runId"]
    tables = [e for e in latest["metadataEntries"] if e["__typename"] == "TableMetadataEntry"]
    plots = [
        e["label"]
        for e in latest["metadataEntries"]
        if e["__typename"] == "MarkdownMetadataEntry" and "![" in e["mdStr"]
    ]
    assert tables and len(plots) >= 2, (
        f"expected a table and plots in the metadata, got {[e['label'] for e in latest['metadataEntries']]}"
    )

    page.goto(f"{dagster_dev.url}/assets/{STATS}")
    for entry in tables:
        row = page.locator("tr", has=page.get_by_text(entry["label"], exact=True)).first
        table = row.locator("table").first
        table.wait_for()
        columns = [c["name"] for c in entry["table"]["schema"]["columns"]]
        first_cells = [str(next(iter(json.loads(r).values()))) for r in entry["table"]["records"]]
        header = table.inner_text()
        assert all(c in header for c in columns[:4]), (
            f"table {entry['label']} lacks columns {columns[:4]}: {header[:500]}"
        )
        assert all(v in header for v in first_cells), f"table {entry['label']} lacks rows {first_cells}: {header[:500]}"
    shot(page, artifacts, f"{STATS}-metadata")
    for label in plots:
        row = page.locator("tr", has=page.get_by_text(label, exact=True)).first
        row.get_by_text("Show Markdown").click()
        dialog = page.locator(".dagster-dialog").filter(has_text=label)
        image = dialog.locator("img").first
        image.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size[0] > 100 and size[1] > 100, f"{label}: image {size}"
        assert (image.get_attribute("src") or "").startswith("data:image/png")
        shot(page, artifacts, f"{STATS}-{label}")
        dialog.get_by_role("button", name="Close").click()
        sync_api.expect(dialog).to_have_count(0)


def test_no_credential_is_shown_in_the_ui(page, dagster_dev, artifacts):
    """Resource pages show EnvVar credentials by name; no page, run config, log or file of the
    Dagster home holds the secret value."""
    location = dagster_dev.graphql(
        """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
             ... on RepositoryLocation { repositories { name allTopLevelResourceDetails {
             name configuredValues { key value type } } } } } } } } }"""
    )["workspaceOrError"]["locationEntries"][0]
    resources = location["locationOrLoadError"]["repositories"][0]["allTopLevelResourceDetails"]
    assert SECRET not in json.dumps(resources)
    as_env = [
        (r["name"], v["key"]) for r in resources for v in r["configuredValues"] if v["value"] == "AWS_SECRET_ACCESS_KEY"
    ]
    assert all(
        v["type"] == "ENV_VAR"
        for r in resources
        for v in r["configuredValues"]
        if v["value"] == "AWS_SECRET_ACCESS_KEY"
    )
    for resource in resources:
        page.goto(f"{dagster_dev.url}/locations/{location['name']}/resources/{resource['name']}")
        page.get_by_text("Configuration").first.wait_for()
        page.get_by_text(resource["name"], exact=True).first.wait_for()
        assert SECRET not in page.content(), f"the secret is shown on the page of resource {resource['name']}"
        if any(name == resource["name"] for name, _ in as_env):
            sync_api.expect(page.get_by_text("AWS_SECRET_ACCESS_KEY").first).to_be_visible()
            shot(page, artifacts, f"resource-{resource['name']}")
    runs = dagster_dev.graphql("{ runsOrError { ... on Runs { results { runId runConfigYaml tags { value } } } } }")
    assert runs["runsOrError"]["results"] and SECRET not in json.dumps(runs)
    page.goto(f"{dagster_dev.url}/runs")
    page.get_by_text("crawl_docs").first.wait_for()
    assert SECRET not in page.content()
    assert SECRET not in dagster_dev.log_path.read_text(errors="replace")
    leaked = [str(p) for p in dagster_dev.home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_a_batch_partition_key_survives_the_partitions_page_and_a_reload(page, dagster_dev, artifacts):
    """With CRAWL_BATCH_FILES > 1 a partition key names its first file and how many follow
    (`<file>+N`): the UI lists it, selects it, and reads it back from its own URL ("+" must not
    turn into a space on the way)."""
    from dagster import DagsterInstance

    from dataset_assets.orchestration.graph import crawl_shards
    from dataset_assets.status import batches
    from resources.lake import Lake

    files = ["zz-batch-a.jsonl.gz", "zz-batch-b.jsonl.gz"]  # never landed: only their key is shown
    key = batches.register(Lake(root=dagster_dev.env["DATASET_LAKE"]), [files])[0]
    assert key == "zz-batch-a.jsonl.gz+1"
    instance = DagsterInstance.from_config(str(dagster_dev.home))
    instance.add_dynamic_partitions(crawl_shards.name, [key])
    try:
        page.goto(f"{dagster_dev.url}/assets/crawl_docs?view=partitions")
        page.get_by_text(key, exact=True).first.click()
        page.wait_for_url(re.compile(r"partition=zz-batch-a\.jsonl\.gz%2B1"))
        page.reload()
        page.get_by_text(key, exact=True).first.wait_for()
        # The list and the selected partition's panel.
        sync_api.expect(page.get_by_text(key, exact=True)).not_to_have_count(1)
        shot(page, artifacts, "crawl_docs-batch-partition")
    finally:
        instance.delete_dynamic_partition(crawl_shards.name, key)
        instance.dispose()
