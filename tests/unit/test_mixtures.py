"""Mixture versions on a fake lake: sampling by tokens, determinism, versions, bad inputs, pull, lineage, SQL."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import datasets
import duckdb
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector

from dataset_assets.mixtures import duckdb_views, list_versions, load_mixture, pull
from dataset_assets.mixtures.build import MIXTURE_SCHEMA, build_mixtures
from dataset_assets.mixtures.lineage import cmd_lineage, trace
from dataset_assets.mixtures.pull import ChecksumError, VersionNotFoundError, cmd_pull, cmd_versions
from dataset_assets.mixtures.recipe import RecipeError, UpstreamError, load_recipe
from resources.lake import Lake
from tests.conftest import distinct_english
from tests.support.mixture_lake import STRATEGIES, TOKENIZER, make_lake, write_recipe, write_rephrased, write_shard

WEIGHTS = {"natural": 0.7, "wikipedia": 0.1, "qa": 0.1, "summary": 0.1}


def build(lake, recipe_path):
    return build_mixtures(lake, load_recipe(recipe_path, STRATEGIES), TOKENIZER)


def rows_of(lake, name, version):
    directory = lake.path("mixtures", name, version)
    return pq.read_table(
        sorted(
            f"{directory}/{f}"
            for f in lake.get_json(["mixtures", name, version, "manifest.json"])["files"]
            if f.endswith(".parquet")
        )
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture")
    lake = make_lake(root / "lake")
    recipe = write_recipe(root / "recipes", budget_tokens=8000)
    (result,) = build(lake, recipe)
    return {"root": root, "lake": lake, "recipe": recipe, "result": result}


def test_achieved_token_shares_are_within_two_points_of_the_weights(published):
    manifest = published["result"].manifest
    assert manifest["achieved_shares"] == pytest.approx(WEIGHTS, abs=0.02)
    assert abs(manifest["tokens"] - 8000) / 8000 < 0.03  # within a document or so per component
    table = rows_of(published["lake"], "mix", "v1")
    by_component = Counter()
    for component, tokens in zip(table.column("component").to_pylist(), table.column("tokens").to_pylist()):
        by_component[component] += tokens
    assert dict(by_component) == {k: v["tokens"] for k, v in manifest["components"].items()}


def test_rows_follow_the_mixture_contract_and_are_shuffled_across_components(published):
    table = rows_of(published["lake"], "mix", "v1")
    assert table.schema.names == MIXTURE_SCHEMA.names
    rows = table.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["component"] for r in rows} == set(WEIGHTS)
    for r in rows:
        if r["component"] == "natural":
            assert r["rephrased_id"] is None and r["source_id"] == r["seed_id"]
        else:
            assert r["rephrased_id"] == r["source_id"] == f"{r['seed_id']}-{r['component']}"
        assert r["seed_id"].startswith(r["shard"]) and r["text"]
    # The first rows already mix components and shards: the shuffle is global, not per source.
    first = rows[:15]
    assert len({r["component"] for r in first}) > 1 and len({r["shard"] for r in first}) > 1


def test_parquet_shards_have_a_fixed_row_count_and_checksums(published):
    lake, manifest = published["lake"], published["result"].manifest
    parts = sorted(f for f in manifest["files"] if f.endswith(".parquet"))
    counts = [manifest["files"][f]["rows"] for f in parts]
    assert all(c == 10 for c in counts[:-1]) and 0 < counts[-1] <= 10 and sum(counts) == manifest["rows"]
    for name, entry in manifest["files"].items():
        data = lake.get_bytes(["mixtures", "mix", "v1", name])
        assert len(data) == entry["bytes"]
    assert (
        pq.ParquetFile(lake.path("mixtures", "mix", "v1", parts[0])).metadata.row_group(0).column(1).compression.lower()
        == "zstd"
    )


def test_manifest_records_recipe_upstream_versions_prompts_and_generator(published):
    manifest = published["result"].manifest
    for key in (
        "recipe",
        "achieved_shares",
        "repetition",
        "upstream",
        "prompt_hashes",
        "generator",
        "code_version",
        "created",
        "files",
    ):
        assert key in manifest
    assert manifest["recipe"]["seed"] == 7 and manifest["recipe"]["components"][0]["source"] == "natural"
    upstream = {(u["asset"], u["partition"].get("strategy")) for u in manifest["upstream"]}
    assert upstream == {("seeds", None), *(("rephrased", s) for s in STRATEGIES)}
    assert len(manifest["upstream"]) == 8 and all(len(u["data_version"]) == 16 for u in manifest["upstream"])
    assert manifest["prompt_hashes"] == {s: [f"{s}-p1"] for s in STRATEGIES}
    assert manifest["generator"] == ["tiny-llama@0000000"]
    assert json.loads(published["lake"].get_bytes(["mixtures", "mix", "latest.json"]))["version"] == "v1"


def test_manifest_and_card_measure_every_component_at_the_same_size(published):
    measured = published["result"].manifest["component_measures"]
    components = measured["components"]
    assert set(components) == set(WEIGHTS) and 0 < measured["matched_words"] <= 5_000
    # Cut to one size: each within one document's words of the smallest sample.
    assert all(c["matched_words"] == measured["matched_words"] for c in components.values())
    assert (
        components["natural"]["source_word_share"] is None and components["natural"]["unsupported_number_rate"] is None
    )
    for strategy in STRATEGIES:  # looked up from the rephrased rows the version holds
        c = components[strategy]
        assert 0.5 <= c["source_word_share"] <= 0.59 and 0.1 <= c["unsupported_number_rate"] <= 0.4
        assert 0 < c["distinct_2"] <= 1 and 0 < c["compression_ratio"] < 1
    card = published["lake"].get_bytes(["mixtures", "mix", "v1", "README.md"]).decode()
    assert f"each cut to the same {measured['matched_words']:,} words" in card
    assert re.search(r"\| qa \| 0\.\d{3} \| 0\.\d{3} \| 0\.\d{3} \| 0\.\d{3}, \d+\.\d% \| 0\.5\d \| \d+\.\d% \|", card)
    assert re.search(r"\| natural \| .* \| - \| - \|", card)


def test_the_card_sample_takes_a_fixed_share_of_each_components_first_uses():
    import hashlib

    import pyarrow as pa

    from dataset_assets.mixtures.component_measures import OVERSAMPLE, TOKENS_PER_WORD, ComponentSampler

    rows = [
        {
            "id": hashlib.md5(str(i).encode()).hexdigest()[:16],  # mixture ids are a hash's 16 hex digits
            "component": "a" if i % 2 else "b",
            "text": "word " * 10,
            "rephrased_id": None,
            "repeat": 1 if i % 7 == 0 else 0,
        }
        for i in range(8000)
    ]
    wanted = OVERSAMPLE * 1000 * TOKENS_PER_WORD  # tokens a 1,000-word sample needs, oversampled
    sampler = ComponentSampler({"a": int(4 * wanted), "b": int(wanted / 2)}, cap_words=1000)
    passed = list(sampler.observe(iter([pa.Table.from_pylist(rows[:5000]), pa.Table.from_pylist(rows[5000:])])))
    assert sum(t.num_rows for t in passed) == 8000  # every row still goes to the shards
    first_uses = {c: sum(1 for r in rows if r["component"] == c and r["repeat"] == 0) for c in "ab"}
    assert abs(len(sampler.rows["a"]) - first_uses["a"] / 4) < 0.1 * first_uses["a"] / 4  # a quarter
    assert len(sampler.rows["b"]) == first_uses["b"]  # a small component whole
    assert all(r["component"] == "a" for r in sampler.rows["a"])


def test_a_collapsed_component_stands_out_in_the_card(tmp_path):
    lake = make_lake(tmp_path / "lake")
    for n, shard in enumerate(("shard-a", "shard-b")):
        seeds = [s for s in lake.read_partition("seeds", {"shard": shard}).to_pylist() if s["kept"]]
        # qa: real, different paragraphs (WikiText-2); summary: one paragraph with one word changed.
        write_rephrased(lake, shard, "qa", seeds, text_of=lambda j, seed, n=n: distinct_english(100 * n + j))
        write_rephrased(
            lake,
            shard,
            "summary",
            seeds,
            text_of=lambda j, seed: (
                "This article explains the main facts about the subject. It covers the background, "
                f"the people involved and the outcome of event number {j} in some detail for the reader."
            ),
        )
    (result,) = build(lake, write_recipe(tmp_path / "recipes", budget_tokens=8000))
    components = result.manifest["component_measures"]["components"]
    assert components["summary"]["self_similarity_above_half"] >= 0.9
    assert components["qa"]["self_similarity_above_half"] <= 0.1
    assert components["summary"]["distinct_2"] < components["qa"]["distinct_2"] / 2


def test_same_inputs_reuse_the_version_and_write_nothing(published):
    lake = published["lake"]

    def listing():
        return {
            i.path: i.mtime_ns
            for i in lake.fs.get_file_info(FileSelector(lake.path("mixtures", "mix"), recursive=True))
        }

    before = listing()
    (again,) = build(lake, published["recipe"])
    assert again.reused and again.version == "v1" and again.identity == published["result"].identity
    assert listing() == before


def test_a_fresh_lake_with_the_same_data_gets_byte_identical_files(published, tmp_path):
    other = make_lake(tmp_path / "lake")
    (result,) = build(other, published["recipe"])
    assert result.identity == published["result"].identity and result.version == "v1"
    mine, theirs = published["result"].manifest["files"], result.manifest["files"]
    assert {k: v["sha256"] for k, v in mine.items()} == {k: v["sha256"] for k, v in theirs.items()}


def test_a_different_seed_gives_a_different_sample_of_the_same_shares(published, tmp_path):
    lake = make_lake(tmp_path / "lake")
    (result,) = build(lake, write_recipe(tmp_path / "recipes", budget_tokens=8000, seed=8))
    assert result.manifest["achieved_shares"] == pytest.approx(WEIGHTS, abs=0.02)
    assert (
        result.manifest["files"]["part-00000.parquet"]["sha256"]
        != published["result"].manifest["files"]["part-00000.parquet"]["sha256"]
    )


def test_changed_upstream_publishes_v2_and_v1_stays_pullable(tmp_path):
    lake = make_lake(tmp_path / "lake")
    recipe = write_recipe(tmp_path / "recipes")
    (v1,) = build(lake, recipe)
    write_shard(lake, "shard-c")  # a new crawl shard flowed through seeds and rephrased
    (v2,) = build(lake, recipe)
    assert (v1.version, v2.version, v2.reused) == ("v1", "v2", False)
    assert {u["partition"]["shard"] for u in v2.manifest["upstream"]} == {"shard-a", "shard-b", "shard-c"}
    assert [v["version"] for v in list_versions(lake, "mix")] == ["v1", "v2"]
    assert lake.get_json(["mixtures", "mix", "latest.json"])["version"] == "v2"
    assert pull(lake, "mix@v1", tmp_path / "old").joinpath("manifest.json").is_file()
    assert rows_of(lake, "mix", "v1").num_rows == v1.manifest["rows"]
    # A rewritten partition (new prompt) changes its data version: v3.
    write_rephrased(
        lake, "shard-a", "qa", lake.read_partition("seeds", {"shard": "shard-a"}).to_pylist()[:12], prompt_hash="p2"
    )
    (v3,) = build(lake, recipe)
    assert v3.version == "v3" and "qa-p2" in v3.manifest["prompt_hashes"]["qa"]


def test_repetition_fills_a_small_component_but_never_past_the_cap(tmp_path):
    lake = make_lake(tmp_path / "lake", rephrase_every=6)  # about 300 tokens per strategy, 800 needed
    recipe = write_recipe(tmp_path / "recipes", budget_tokens=8000, max_repetition=3.0)
    (result,) = build(lake, recipe)
    manifest = result.manifest
    assert manifest["achieved_shares"] == pytest.approx(WEIGHTS, abs=0.03)
    for label in STRATEGIES:
        component = manifest["components"][label]
        assert 2.0 < component["repetition"] <= 3.0 and component["max_copies"] == 3
    table = rows_of(lake, "mix", "v1").to_pylist()
    copies = Counter((r["component"], r["source_id"]) for r in table)
    assert max(copies.values()) <= 3 and max(r["repeat"] for r in table) == 2
    assert manifest["components"]["natural"]["max_copies"] == 1


def test_a_component_too_small_even_after_repetition_is_refused_and_nothing_is_written(tmp_path):
    lake = make_lake(tmp_path / "lake", rephrase_every=4)
    recipe = write_recipe(tmp_path / "recipes", budget_tokens=8000, max_repetition=1.5)
    with pytest.raises(RecipeError) as err:
        build(lake, recipe)
    message = str(err.value)
    assert (
        "mix.toml" in message
        and "component 'wikipedia' needs 800 tokens but has" in message
        and "max_repetition 1.5" in message
    )
    assert not lake.exists(["mixtures", "mix"])


def test_an_empty_component_is_refused(tmp_path):
    lake = make_lake(tmp_path / "lake", strategies=("wikipedia", "qa"))
    for shard in ("shard-a", "shard-b"):
        write_rephrased(lake, shard, "summary", [])  # finished partitions with no rows
    with pytest.raises(RecipeError, match="component 'summary' is empty"):
        build(lake, write_recipe(tmp_path / "recipes"))


def test_missing_and_unfinished_upstream_partitions_are_named(tmp_path):
    lake = make_lake(tmp_path / "lake", strategies=("wikipedia", "qa"))
    seeds = lake.read_partition("seeds", {"shard": "shard-a"}).to_pylist()
    write_rephrased(lake, "shard-a", "summary", seeds, finished=False)
    crawled = lake.read_partition("crawl_docs", {"shard": "shard-a"})
    lake.write_partition(
        "crawl_docs", {"shard": "shard-z"}, crawled.to_batches(), crawled.schema
    )  # crawled, never scored
    with pytest.raises(UpstreamError) as err:
        build(lake, write_recipe(tmp_path / "recipes"))
    message = str(err.value)
    assert "rephrased shard=shard-a strategy=summary (unfinished: no _manifest.json)" in message
    assert "rephrased shard=shard-b strategy=summary" in message and "seeds shard=shard-z" in message
    assert "`shards`" in message
    assert not lake.exists(["mixtures", "mix"])


def test_an_empty_lake_says_what_to_materialise_first(tmp_path):
    with pytest.raises(UpstreamError, match="holds no seeds: materialise crawl_docs and seeds first"):
        build(Lake(root=str(tmp_path / "lake")), write_recipe(tmp_path / "recipes"))


def test_the_shards_field_limits_the_mixture_to_those_shards(tmp_path):
    lake = make_lake(tmp_path / "lake", shards=("shard-a", "shard-b", "shard-c"))
    (result,) = build(lake, write_recipe(tmp_path / "recipes", shards=["shard-a", "shard-c"], budget_tokens=6000))
    assert {u["partition"]["shard"] for u in result.manifest["upstream"]} == {"shard-a", "shard-c"}
    assert set(rows_of(lake, "mix", "v1").column("shard").to_pylist()) == {"shard-a", "shard-c"}


def test_a_sweep_publishes_one_mixture_per_synthetic_share(tmp_path):
    lake = make_lake(tmp_path / "lake")
    results = build(lake, write_recipe(tmp_path / "recipes", budget_tokens=4000, max_repetition=2.0, sweep=[0, 10, 50]))
    assert [r.name for r in results] == ["mix", "mix-syn0", "mix-syn10", "mix-syn50"]
    shares = {r.name: r.manifest["achieved_shares"] for r in results}
    assert shares["mix-syn0"] == {"natural": 1.0}
    assert 1 - shares["mix-syn10"]["natural"] == pytest.approx(0.10, abs=0.02)
    assert 1 - shares["mix-syn50"]["natural"] == pytest.approx(0.50, abs=0.02)
    syn0 = results[1].manifest
    assert (
        syn0["variant_of"] == "mix"
        and syn0["synthetic_percent"] == 0
        and {u["asset"] for u in syn0["upstream"]} == {"seeds"}
    )
    assert all(r.version == "v1" for r in results)


def test_a_version_without_manifest_is_ignored_and_replaced(tmp_path):
    lake = make_lake(tmp_path / "lake")
    lake.put_bytes(["mixtures", "mix", "v1", "part-00000.parquet"], b"half a publish")
    with pytest.raises(VersionNotFoundError):
        list_versions(lake, "mix")
    (result,) = build(lake, write_recipe(tmp_path / "recipes"))
    assert (
        result.version == "v1"
        and pq.read_table(lake.path("mixtures", "mix", "v1", "part-00000.parquet")).num_rows == 10
    )


# -- pulling ---------------------------------------------------------------------------------------
def test_pull_copies_every_file_and_verifies_checksums(published, tmp_path):
    message = cmd_pull(published["lake"], "mix", str(tmp_path / "out"))
    assert "pulled mix@v1" in message and "sha256 of every file verified" in message
    manifest = published["result"].manifest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*manifest["files"], "manifest.json"])
    assert pull(published["lake"], "mix@v1", tmp_path / "out") == (tmp_path / "out").resolve()  # same version: no-op


def test_pull_refuses_a_non_empty_destination(published, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        pull(published["lake"], "mix", tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_lake_file_fails_the_pull_and_leaves_nothing_behind(tmp_path, damage):
    lake = make_lake(tmp_path / "lake")
    build(lake, write_recipe(tmp_path / "recipes"))
    victim = lake.path("mixtures", "mix", "v1", "part-00001.parquet")
    data = bytearray(open(victim, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 3]
    open(victim, "wb").write(bytes(data))
    dest = tmp_path / "pulled" / "mix"
    with pytest.raises(ChecksumError) as err:
        pull(lake, "mix@v1", dest)
    message = str(err.value)
    assert (
        "part-00001.parquet" in message and "corrupt" in message and ("truncated" in message) == (damage == "truncate")
    )
    assert not dest.exists() and list((tmp_path / "pulled").iterdir()) == []


def test_pulling_a_version_that_does_not_exist_lists_the_published_ones(published, tmp_path):
    with pytest.raises(VersionNotFoundError, match=r"mixture 'mix' has no version v9; published versions: v1"):
        pull(published["lake"], "mix@v9", tmp_path / "x")
    with pytest.raises(VersionNotFoundError, match=r"no published mixture named 'nope'.*mixtures there: mix"):
        pull(published["lake"], "nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_versions_table_lists_size_shares_and_creation_time(published):
    text = cmd_versions(published["lake"], "mix")
    assert (
        "v1 *" in text
        and re.search(r"natural 69\.\d%|natural 70\.\d%", text)
        and published["result"].manifest["created"] in text
    )
    (row,) = list_versions(published["lake"], "mix")
    assert row["rows"] == published["result"].manifest["rows"] and row["bytes"] > 0 and row["latest"]


def test_versions_of_an_unknown_mixture_name_the_known_ones_without_a_traceback(published, capsys):
    from dataset_assets.cli import main

    assert main(["versions", "NO_SUCH_NAME", "--lake", published["lake"].root]) == 1
    err = capsys.readouterr().err
    assert (
        "no published mixture named 'NO_SUCH_NAME'" in err and "mixtures there: mix" in err and "Traceback" not in err
    )


# -- opening as a Dataset --------------------------------------------------------------------------
def test_load_mixture_returns_a_dataset_with_the_rows_and_columns(published, tmp_path):
    ds = load_mixture("mix", lake=published["lake"], cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == MIXTURE_SCHEMA.names and ds.num_rows == published["result"].manifest["rows"]
    assert ds[0]["id"] == rows_of(published["lake"], "mix", "v1").column("id")[0].as_py()  # shuffled order kept
    streamed = load_mixture("mix", "v1", lake=published["lake"], streaming=True, cache_dir=str(tmp_path / "cache"))
    assert sum(1 for _ in streamed) == ds.num_rows


def test_a_pulled_directory_opens_with_load_dataset_through_its_card(published, tmp_path):
    dest = pull(published["lake"], "mix@v1", tmp_path / "mix-v1")
    card = (dest / "README.md").read_text()
    assert card.startswith("---\n") and "configs:" in card and "part-*.parquet" in card
    ds = datasets.load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == published["result"].manifest["rows"] and "component" in ds.column_names


# -- lineage and SQL -------------------------------------------------------------------------------
def test_lineage_leads_from_a_synthetic_row_to_its_crawl_record(published):
    lake = published["lake"]
    row = next(r for r in rows_of(lake, "mix", "v1").to_pylist() if r["component"] == "qa")
    chain = trace(lake, "mix@v1", row["id"])
    assert [step["level"] for step in chain] == ["mixture", "rephrased", "seed", "crawl"]
    assert chain[1]["id"] == row["rephrased_id"] and chain[1]["strategy"] == "qa" and chain[1]["prompt_hash"] == "qa-p1"
    assert chain[2]["id"] == row["seed_id"] and chain[2]["kept"] is True
    number = int(row["seed_id"].rsplit("doc", 1)[1])
    assert chain[3]["url"] == f"http://example.com/{row['shard']}/{number}"
    assert chain[3]["warc_record_id"] == f"<urn:uuid:{row['shard']}-{number}>" and chain[3]["offset"] == 1000 * number
    assert not any("note" in step for step in chain)
    printed = cmd_lineage(lake, "mix@v1", row["id"])
    assert printed.splitlines()[0].startswith("mixture") and "warc_record_id=<urn:uuid:" in printed


def test_lineage_of_a_natural_row_skips_the_rephrased_step(published):
    row = next(r for r in rows_of(published["lake"], "mix", "v1").to_pylist() if r["component"] == "natural")
    chain = trace(published["lake"], "mix", row["id"])
    assert [step["level"] for step in chain] == ["mixture", "seed", "crawl"]
    with pytest.raises(LookupError, match="no row with id 'nope'"):
        trace(published["lake"], "mix@v1", "nope")


def test_lineage_notes_an_upstream_partition_rewritten_since_the_version(tmp_path):
    lake = make_lake(tmp_path / "lake")
    build(lake, write_recipe(tmp_path / "recipes"))
    row = next(
        r for r in rows_of(lake, "mix", "v1").to_pylist() if r["component"] == "wikipedia" and r["shard"] == "shard-a"
    )
    seeds = lake.read_partition("seeds", {"shard": "shard-a"}).to_pylist()
    write_rephrased(lake, "shard-a", "wikipedia", [s for s in seeds if s["kept"]], prompt_hash="p9")
    chain = trace(lake, "mix@v1", row["id"])
    assert "rephrased partition changed since this version" in chain[1]["note"]


def test_duckdb_views_query_partitions_and_mixtures(published):
    con = duckdb_views(published["lake"], duckdb.connect())
    assert con.execute("SELECT count(DISTINCT shard) FROM crawl_docs").fetchall() == [(2,)]
    assert con.execute("SELECT count(*) FROM seeds WHERE kept").fetchall() == [(36,)]
    assert con.execute("SELECT count(DISTINCT strategy) FROM rephrased").fetchall() == [(3,)]
    by = con.execute("SELECT name, version, component, sum(tokens) FROM mixtures GROUP BY ALL ORDER BY 3").fetchall()
    manifest = published["result"].manifest
    assert by == sorted((("mix", "v1", k, v["tokens"]) for k, v in manifest["components"].items()), key=lambda r: r[2])
    joined = con.execute(
        "SELECT count(*) FROM mixtures m JOIN seeds s ON s.id = m.seed_id WHERE m.component = 'natural'"
    ).fetchall()
    assert joined == [(manifest["components"]["natural"]["rows"],)]


def test_pulled_files_match_the_lake_after_a_copy_of_the_lake(published, tmp_path):
    # Versions are plain files: a copied lake (e.g. synced to another machine) pulls the same bytes.
    copy = tmp_path / "lake-copy"
    shutil.copytree(published["lake"].path(), copy)
    dest = pull(Lake(root=str(copy)), "mix@latest", tmp_path / "out")
    assert json.loads((dest / "manifest.json").read_text())["identity"] == published["result"].identity


def test_upstream_rows_sharing_an_id_in_one_shard_are_refused(tmp_path):
    lake = make_lake(tmp_path / "lake")
    seeds = lake.read_partition("seeds", {"shard": "shard-a"})
    lake.write_partition(
        "seeds", {"shard": "shard-a"}, [*seeds.to_batches(), *seeds.slice(0, 2).to_batches()], seeds.schema
    )
    with pytest.raises(UpstreamError, match="component 'natural': upstream rows share an id within one shard"):
        build(lake, write_recipe(tmp_path / "recipes"))


def test_any_tokenizer_with_encode_batch_and_a_fingerprint_counts_tokens(tmp_path):
    class Words:  # the shape of resources.tokenizer's tokenizers
        name, fingerprint = "words", "w1"

        def encode_batch(self, texts):
            return [t.split() for t in texts]

    lake = make_lake(tmp_path / "lake")
    (result,) = build_mixtures(
        lake, load_recipe(write_recipe(tmp_path / "recipes", budget_tokens=5000), STRATEGIES), Words()
    )
    assert result.manifest["tokenizer"] == {"name": "words", "fingerprint": "w1"}
    table = rows_of(lake, "mix", "v1").to_pylist()
    assert all(r["tokens"] == len(r["text"].split()) for r in table)


def test_a_partition_failing_a_quality_check_at_error_is_left_out_and_named(tmp_path):
    lake = make_lake(tmp_path / "lake")
    seeds = [s for s in lake.read_partition("seeds", {"shard": "shard-b"}).to_pylist() if s["kept"]]
    failed = {
        "repetition_share": {"severity": "error", "value": 0.7, "warn": 0.2, "error": 0.5, "rows": 18},
        "kept_share": {"severity": "ok", "value": 0.8, "warn": 0.3, "error": 0.05, "rows": 18},
    }
    write_rephrased(lake, "shard-b", "qa", seeds, checks=failed)
    (result,) = build(lake, write_recipe(tmp_path / "recipes", budget_tokens=6000))
    manifest = result.manifest
    assert manifest["excluded_partitions"] == [
        {
            "partition": {"shard": "shard-b", "strategy": "qa"},
            "failed_checks": {"repetition_share": failed["repetition_share"]},
        }
    ]
    assert {"asset": "rephrased", "partition": {"shard": "shard-b", "strategy": "qa"}} not in [
        {k: u[k] for k in ("asset", "partition")} for u in manifest["upstream"]
    ]
    qa_shards = {r["shard"] for r in rows_of(lake, "mix", result.version).to_pylist() if r["component"] == "qa"}
    assert qa_shards == {"shard-a"}  # only the partition that passed
