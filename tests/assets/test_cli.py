"""`dataset-assets run` end to end on real sample shards, recorded in a real Dagster home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from dagster import AssetKey, DagsterInstance

from resources.lake import Lake
from tests.conftest import CRAWL, QUALITY, ROOT


def cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "dataset_assets.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_materialises_every_stage_for_every_shard_and_records_runs(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("c4-en-sample-1000.jsonl.gz", "cc-main-2020-34-excerpt.warc.gz", "web-pages-a.warc.gz"):
        shutil.copy(CRAWL / name, landing / name)
    home = tmp_path / "home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "QUALITY_REFERENCE": str(QUALITY)}
    lake_dir = tmp_path / "lake"

    done = cli(
        "run",
        "--landing",
        str(landing),
        "--lake",
        str(lake_dir),
        "--select",
        "crawl_docs,quality_classifier,seeds",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("ok")]
    assert len(lines) == 3 + 1 + 3, done.stdout

    lake = Lake(root=str(lake_dir))
    shards = ["c4-en-sample-1000.jsonl.gz", "cc-main-2020-34-excerpt.warc.gz", "web-pages-a.warc.gz"]
    assert lake.partition_values("crawl_docs", "shard") == shards
    assert lake.partition_values("seeds", "shard") == shards
    assert lake.exists(["quality_classifier", "model.bin"])
    kept = lake.read_partition("seeds", {"shard": "web-pages-a.warc.gz"}).to_pylist()
    assert any(r["kept"] for r in kept) and all(r["url"].startswith("http") for r in kept)

    instance = DagsterInstance.from_config(str(home))
    try:
        assert sorted(instance.get_dynamic_partitions("crawl_shards")) == shards
        seeds_mat = instance.get_latest_materialization_event(AssetKey("seeds"))
        assert seeds_mat is not None and seeds_mat.dagster_event.partition in shards
        assert instance.get_latest_materialization_event(AssetKey("quality_classifier")) is not None
    finally:
        instance.dispose()


def test_select_limits_the_assets_and_unknown_names_are_refused(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(CRAWL / "cc-main-2020-34-excerpt.warc.gz", landing)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    done = cli("run", "--landing", str(landing), "--lake", str(tmp_path / "lake"), "--select", "crawl_docs", env=env)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("ok")] == [
        "crawl_docs[cc-main-2020-34-excerpt.warc.gz]"
    ]
    assert not (tmp_path / "lake" / "seeds").exists()
    bad = cli("run", "--landing", str(landing), "--lake", str(tmp_path / "lake"), "--select", "sedes", env=env)
    assert bad.returncode == 2 and "sedes" in bad.stderr


def test_definitions_load_for_dagster_dev(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "dagster"),
            "definitions",
            "validate",
            "-m",
            "dataset_assets.definitions",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dg_checks_and_lists_the_definitions(tmp_path):
    """The project as `dg` (configured in [tool.dg]) sees it: definitions load, every asset listed."""
    dg = os.path.join(os.path.dirname(sys.executable), "dg")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    checked = subprocess.run([dg, "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and "All definitions loaded successfully" in checked.stdout + checked.stderr, (
        checked.stderr[-3000:]
    )
    listed = subprocess.run(
        [dg, "list", "defs", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    keys = {a["asset_key"] for a in json.loads(listed.stdout[listed.stdout.index("{") :])["assets"]}
    assert {
        "crawl_docs",
        "dedup_signatures",
        "dedup_buckets",
        "dedup_clusters",
        "seeds",
        "rephrased",
        "corpus_stats",
    } <= keys


def test_run_rephrases_chosen_strategies_then_only_what_is_missing_or_outdated(tmp_path, tiny_model):
    import pytest

    pytest.importorskip("vllm", reason="needs the cpu (or gpu) extra: make test installs it")
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(CRAWL / "cc-main-2019-30-docs.jsonl.gz", landing)
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "QUALITY_REFERENCE": str(QUALITY),
        "REPHRASE_MODEL": tiny_model,
        "REPHRASE_PROMPTS": str(prompts),
    }
    args = [
        "run",
        "--landing",
        str(landing),
        "--lake",
        str(tmp_path / "lake"),
        "--strategies",
        "summary,wikipedia",
        "--chunk-docs",
        "4",
        "--max-output-tokens",
        "16",
        "--select",
        "crawl_docs,quality_classifier,seeds,rephrased",
    ]
    first = cli(*args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "rephrased: 2 of 2 partitions missing or outdated" in first.stdout
    assert "ok     rephrased[cc-main-2019-30-docs.jsonl.gz..cc-main-2019-30-docs.jsonl.gz x summary]" in first.stdout
    lake = Lake(root=str(tmp_path / "lake"))
    kept = [
        r for r in lake.read_partition("seeds", {"shard": "cc-main-2019-30-docs.jsonl.gz"}).to_pylist() if r["kept"]
    ]
    rows = lake.read_partition(
        "rephrased", {"shard": "cc-main-2019-30-docs.jsonl.gz", "strategy": "summary"}
    ).to_pylist()
    assert sorted(r["source_id"] for r in rows) == sorted(r["id"] for r in kept)
    assert len(
        lake.partition_files("rephrased", {"shard": "cc-main-2019-30-docs.jsonl.gz", "strategy": "summary"})
    ) == -(-len(kept) // 4)

    (prompts / "summary.toml").write_text((prompts / "summary.toml").read_text().replace("top_p = 0.95", "top_p = 0.9"))
    # `status` says the same as the next run will do: summary outdated because its prompt was edited,
    # wikipedia current, every other strategy missing; the dedup stages were never run here.
    where = ["--landing", str(landing), "--lake", str(tmp_path / "lake"), "--max-output-tokens", "16"]
    status = cli("status", *where, "--json", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assets = json.loads(status.stdout[status.stdout.index("{") :])["assets"]
    shard = "cc-main-2019-30-docs.jsonl.gz"
    rephrased = assets["rephrased"]
    assert (rephrased["outdated"], rephrased["current"], rephrased["why_outdated"]) == (1, 1, {"prompt edited": 1})
    assert rephrased["outdated_sample"] == [f"{shard}|summary"] and rephrased["missing"] == rephrased["partitions"] - 2
    assert (assets["crawl_docs"]["current"], assets["seeds"]["current"], assets["dedup_signatures"]["missing"]) == (
        1,
        1,
        1,
    )
    assert assets["dedup_clusters"]["missing"] == 1 and assets["dedup_buckets"]["missing"] == 15
    table = cli("status", *where, env=env).stdout
    assert "rephrased" in table and "prompt edited: 1" in table
    # The catalog the commits grew says what the lake says: rebuilt from a walk, status is the same.
    lake_arg = ["--lake", str(tmp_path / "lake")]
    checked = cli("catalog", *lake_arg, "--verify", env=env)
    assert checked.returncode == 0 and "partitions recorded" in checked.stdout, checked.stdout + checked.stderr
    assert cli("catalog", *lake_arg, "--rebuild", env=env).returncode == 0
    again = cli("status", *where, "--json", env=env).stdout
    assert json.loads(again[again.index("{") :])["assets"] == assets
    second = cli(*args[:-1], "rephrased", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "rephrased: 1 of 2 partitions missing or outdated (1 outdated)" in second.stdout
    assert "x summary]" in second.stdout and "x wikipedia]" not in second.stdout


def test_a_file_landed_under_two_names_and_a_file_removed_after_registration(tmp_path):
    """Two bad landings, each ending in a status that tells the truth: the same file under two names
    is two shards whose copies dedup folds into one representative each; a registered file that
    leaves the landing keeps what the lake built from it, and status names it."""
    import duckdb

    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(CRAWL / "cc-main-2019-30-docs.jsonl.gz", landing / "cc-main-2019-30-docs.jsonl.gz")
    shutil.copy(CRAWL / "cc-main-2019-30-docs.jsonl.gz", landing / "uploaded-again.jsonl.gz")
    shutil.copy(CRAWL / "cc-main-2020-34-excerpt.warc.gz", landing / "excerpt.warc.gz")
    home, lake_dir = tmp_path / "home", tmp_path / "lake"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "QUALITY_REFERENCE": str(QUALITY),
        "CRAWL_LANDING": str(landing),
        "DATASET_LAKE": str(lake_dir),
    }
    stages = "crawl_docs,dedup_signatures,dedup_buckets,dedup_clusters,quality_classifier,seeds"
    done = cli("run", "--select", stages, env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    # Every page of the copy is a duplicate of its twin, or its twin of it: one representative per text.
    rows = duckdb.sql(
        f"select shard, content_hash, drop_reason, kept from read_parquet('{lake_dir}/seeds/*/*.parquet', "
        "hive_partitioning=true) where shard in ('cc-main-2019-30-docs.jsonl.gz', 'uploaded-again.jsonl.gz')"
    ).fetchall()
    by_text: dict = {}
    for shard, content_hash, reason, kept in rows:
        by_text.setdefault(content_hash, []).append((shard, reason, kept))
    assert by_text and all(len(copies) >= 2 for copies in by_text.values())
    for copies in by_text.values():
        assert sum(reason not in ("duplicate", "near_duplicate") for _, reason, _ in copies) <= 1, copies
        assert sum(kept for _, _, kept in copies) <= 1, copies
    assert any(reason == "duplicate" for copies in by_text.values() for _, reason, _ in copies)

    def status():
        out = cli("status", "--json", env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    before = status()
    assert before["shards"] == 3 and before["registered_without_file"] == 0
    assert before["assets"]["crawl_docs"]["current"] == 3 and before["assets"]["seeds"]["current"] == 3

    # The excerpt leaves the landing after it was built; a late file is registered, then removed before it was built.
    (landing / "excerpt.warc.gz").unlink()
    shutil.copy(CRAWL / "clueweb09-quirk.warc.gz", landing / "late.warc.gz")
    instance = DagsterInstance.from_config(str(home))
    try:
        instance.add_dynamic_partitions("crawl_shards", ["late.warc.gz"])
    finally:
        instance.dispose()
    (landing / "late.warc.gz").unlink()
    after = status()
    assert after["shards"] == 4 and after["registered_without_file"] == 2
    assert sorted(after["registered_without_file_sample"]) == ["excerpt.warc.gz", "late.warc.gz"]
    crawl = after["assets"]["crawl_docs"]
    assert crawl["current"] == 3 and crawl["missing"] == 1 and crawl["missing_sample"] == ["late.warc.gz"]
    text = cli("status", env=env)
    assert "2 registered shards have no file in the landing any more" in text.stdout, text.stdout
    # run builds what the landing holds; the shard without a file is left for when it comes back.
    again = cli("run", "--select", "crawl_docs", env=env)
    assert again.returncode == 0 and "late.warc.gz" not in again.stdout, again.stdout + again.stderr


def test_batches_of_files_are_partitions_and_the_lake_stays_per_file(tmp_path, tiny_model):
    """CRAWL_BATCH_FILES=2: three landing files become two partitions (a batch of two and a batch of
    one), every stage runs a batch's files one after another, and the lake, the catalog and lineage
    stay per file. Status counts partitions; a file landed later gets its own batch, and the old
    batches are never regrouped."""
    import pytest

    pytest.importorskip("vllm", reason="needs the cpu (or gpu) extra: make test installs it")
    landing = tmp_path / "landing"
    landing.mkdir()
    files = ["c4-en-sample-1000.jsonl.gz", "cc-main-2020-34-excerpt.warc.gz", "web-pages-a.warc.gz"]
    for name in files:
        shutil.copy(CRAWL / name, landing / name)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "QUALITY_REFERENCE": str(QUALITY),
        "REPHRASE_MODEL": tiny_model,
        "CRAWL_BATCH_FILES": "2",
    }
    where = ["--landing", str(landing), "--lake", str(tmp_path / "lake")]
    stages = (
        "crawl_docs,dedup_signatures,dedup_buckets,dedup_clusters,quality_classifier,seeds,rephrased,rephrased_unigrams"
    )
    done = cli(
        "run",
        *where,
        "--strategies",
        "summary",
        "--chunk-docs",
        "8",
        "--max-output-tokens",
        "8",
        "--select",
        stages,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    batch, single = "c4-en-sample-1000.jsonl.gz+1", "web-pages-a.warc.gz"
    assert (
        ": 2 partitions;" in done.stdout
        and f"ok     seeds[{batch}]" in done.stdout
        and f"ok     seeds[{single}]" in done.stdout
    )
    assert (
        f"rephrased[{batch}..{single} x summary]" in done.stdout
        and f"ok     rephrased_unigrams[{batch}|summary]" in done.stdout
    )

    lake = Lake(root=str(tmp_path / "lake"))
    for asset in ("crawl_docs", "dedup_signatures", "seeds"):
        assert lake.partition_values(asset, "shard") == files, asset
    rephrased_rows = 0
    for name in files:  # lineage names the file, not the batch
        assert {
            r["shard"] for r in lake.read_partition("crawl_docs", {"shard": name}, columns=["shard"]).to_pylist()
        } == {name}
        kept = {r["id"] for r in lake.read_partition("seeds", {"shard": name}).to_pylist() if r["kept"]}
        made = lake.read_partition("rephrased", {"shard": name, "strategy": "summary"}).to_pylist()
        assert {r["source_id"] for r in made} == kept, name
        assert lake.has_partition("rephrased_unigrams", {"shard": name, "strategy": "summary"})
        rephrased_rows += len(made)
    assert rephrased_rows > 0
    instance = DagsterInstance.from_config(str(tmp_path / "home"))
    try:
        assert instance.get_dynamic_partitions("crawl_shards") == [batch, single]
        seeds_run = instance.get_latest_materialization_event(AssetKey("seeds"))
        assert seeds_run.dagster_event.partition == single
    finally:
        instance.dispose()

    def status() -> dict:
        out = cli("status", *where, "--max-output-tokens", "8", "--json", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout[out.stdout.index("{") :])

    now = status()
    assert now["shards"] == 2 and now["unregistered_shards"] == 0
    for asset in ("crawl_docs", "dedup_signatures", "seeds"):
        assert (now["assets"][asset]["partitions"], now["assets"][asset]["current"]) == (2, 2), asset
    assert now["assets"]["dedup_clusters"]["current"] == 1 and now["assets"]["dedup_buckets"]["missing"] == 0
    rephrased = now["assets"]["rephrased"]
    assert rephrased["current"] == 2 and rephrased["missing"] == rephrased["partitions"] - 2
    assert rephrased["missing_sample"][0] == f"{batch}|continuation"

    # A file landed later is a partition of its own; the batches registered before stay as they are.
    shutil.copy(CRAWL / "cc-main-2019-30-docs.jsonl.gz", landing)
    later = cli("run", *where, "--select", "crawl_docs", env=env)
    assert later.returncode == 0, later.stdout + later.stderr
    assert "ok     crawl_docs[cc-main-2019-30-docs.jsonl.gz]" in later.stdout and ": 3 partitions;" in later.stdout
    instance = DagsterInstance.from_config(str(tmp_path / "home"))
    try:
        assert instance.get_dynamic_partitions("crawl_shards") == [batch, single, "cc-main-2019-30-docs.jsonl.gz"]
    finally:
        instance.dispose()
    after = status()["assets"]
    assert (after["crawl_docs"]["current"], after["seeds"]["current"], after["seeds"]["missing_sample"]) == (
        3,
        2,
        ["cc-main-2019-30-docs.jsonl.gz"],
    )


def test_status_after_run_with_a_landing_judges_files_against_that_landing(tmp_path):
    """`run --landing DIR --lake LAKE`, then status with only the lake named: the files are in the landing
    they were registered from (recorded in the lake), not missing from the default landing; a file that
    really left that landing is reported gone, with the landing named and how to point status elsewhere."""
    from tests.conftest import english, write_jsonl_gz

    landing, lake = tmp_path / "crawl-2026", tmp_path / "lake"
    landing.mkdir()
    for i in range(3):
        write_jsonl_gz(landing / f"part-{i}.jsonl.gz", [{"id": f"d{i}", "text": english(i), "url": f"http://x/{i}"}])
    env = {k: v for k, v in os.environ.items() if k not in ("CRAWL_LANDING", "DATASET_LAKE")}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    done = cli("run", "--landing", str(landing), "--lake", str(lake), "--select", "crawl_docs", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    status = cli("status", env={**env, "DATASET_LAKE": str(lake)})
    assert status.returncode == 0, status.stderr
    assert f"landing: {landing} (recorded when the files were registered)" in status.stdout
    assert "no file in" not in status.stdout and "3 shards (0 in the landing but not registered yet)" in status.stdout
    (landing / "part-1.jsonl.gz").unlink()  # a file that really left its landing
    status = cli("status", "--json", env={**env, "DATASET_LAKE": str(lake)})
    facts = json.loads(status.stdout)
    assert facts["registered_without_file"] == 1 and facts["registered_without_file_sample"] == ["part-1.jsonl.gz"]
    assert facts["landings"] == [str(landing)]
    status = cli("status", env={**env, "DATASET_LAKE": str(lake)})
    assert f"1 registered shards have no file in the landing any more ({landing}: moved or deleted" in status.stdout
    assert "--landing NEW or CRAWL_LANDING=NEW" in status.stdout
    moved = tmp_path / "moved"  # a landing moved on purpose: named, it is judged instead
    landing.rename(moved)
    status = cli("status", "--landing", str(moved), "--json", env={**env, "DATASET_LAKE": str(lake)})
    assert (
        json.loads(status.stdout)["landings"] == [str(moved)] and json.loads(status.stdout)["landings_from"] == "given"
    )
